//! Model resolution: a local directory, a hub id found in the Hugging Face cache, or a
//! download from the hub into that cache.

use crate::error::{EngineError, Result};
use std::path::{Path, PathBuf};

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// Whether `spec` looks like a hub id (`org/name`) rather than a path.
pub fn is_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The snapshot directory of `id` in the cache, if one holds a config.json.
pub fn cached_snapshot(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Every model in the cache: (hub id, snapshot directory).
pub fn cached_models(cache: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            let snap = cached_snapshot(cache, &id)?;
            Some((id, snap))
        })
        .collect();
    out.sort();
    out
}

fn offline() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"].iter().any(|v| {
        std::env::var(v)
            .map(|s| matches!(s.as_str(), "1" | "true" | "TRUE" | "yes"))
            .unwrap_or(false)
    })
}

/// Resolves `spec` to a model directory: an existing directory as is; a hub id from the cache;
/// otherwise downloads it (with a progress bar) unless `HF_HUB_OFFLINE` is set.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if !is_hub_id(spec) {
        return Err(EngineError::Resolve(format!(
            "model {spec:?}: no such directory, and not a hub id of the form org/name"
        )));
    }
    let cache = hf_cache_dir();
    if let Some(dir) = cached_snapshot(&cache, spec) {
        return Ok(dir);
    }
    let hint = format!(
        "model {spec:?} is not in the Hugging Face cache ({}); download it there while online, or pass a local directory with --model DIR",
        cache.join(format!("models--{}", spec.replace('/', "--"))).display()
    );
    if offline() {
        return Err(EngineError::Resolve(format!(
            "{hint} (HF_HUB_OFFLINE is set)"
        )));
    }
    download(spec, &cache)
        .map_err(|e| EngineError::Resolve(format!("{hint}: download failed: {e}")))
}

/// Downloads the files a cross-encoder (or a sentence-transformers bi-encoder) needs into the
/// cache and returns the snapshot.
fn download(id: &str, cache: &Path) -> std::result::Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    let api = ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_progress(true)
        .with_retries(1)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| e.to_string())?;
    repo.get("tokenizer.json").map_err(|e| e.to_string())?;
    // The sentence-transformers files exist only in bi-encoder repositories.
    for optional in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "chat_template.jinja",
    ] {
        let _ = repo.get(optional);
    }
    // A module chain (Ettin rerankers) keeps each module's config and weights in a folder.
    if let Ok(modules) = repo.get("modules.json") {
        let text = std::fs::read_to_string(&modules).unwrap_or_default();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        for m in list.as_array().into_iter().flatten() {
            if let Some(path) = m["path"].as_str().filter(|p| !p.is_empty()) {
                let _ = repo.get(&format!("{path}/config.json"));
                let _ = repo.get(&format!("{path}/model.safetensors"));
            }
        }
    }
    if repo.get("model.safetensors").is_err() {
        let index = repo.get("model.safetensors.index.json").map_err(|e| {
            format!("neither model.safetensors nor model.safetensors.index.json: {e}")
        })?;
        let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut shards: Vec<String> = json["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        for s in shards {
            repo.get(&s).map_err(|e| e.to_string())?;
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "bad cache path".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths() {
        assert!(is_hub_id("BAAI/bge-reranker-v2-m3"));
        assert!(is_hub_id("cross-encoder/ms-marco-MiniLM-L-6-v2"));
        assert!(!is_hub_id("./models/x"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("../x"));
    }

    #[test]
    fn finds_snapshot_through_refs() {
        let dir = std::env::temp_dir().join(format!("crossrank-cache-{}", std::process::id()));
        let snap = dir.join("models--org--m/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(dir.join("models--org--m/refs")).unwrap();
        std::fs::write(dir.join("models--org--m/refs/main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(cached_snapshot(&dir, "org/m"), Some(snap.clone()));
        assert_eq!(cached_models(&dir), vec![("org/m".to_string(), snap)]);
        assert_eq!(cached_snapshot(&dir, "org/other"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
