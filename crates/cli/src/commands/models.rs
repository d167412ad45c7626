//! `crossrank models`: what models are at hand.

use crate::model_spec::default_model_dir;
use anyhow::Result;
use crossrank_engine::resolve::{cached_models, hf_cache_dir};
use crossrank_engine::{resolve_model, ModelConfig, Template};
use std::path::Path;

/// Arguments of `models`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also describe these models (directories or hub ids).
    #[arg(long, short)]
    pub model: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn describe(source: &str, name: &str, dir: &Path) -> serde_json::Value {
    match ModelConfig::from_file(&dir.join("config.json")) {
        Ok(c) => {
            let template = Template::detect(dir, &c);
            let answers = template
                .as_ref()
                .ok()
                .and_then(|t| t.answer_tokens())
                .filter(|_| c.causal_lm);
            let chain = dir.join("modules.json").is_file() && !c.has_classifier;
            serde_json::json!({
                "source": source, "name": name, "path": dir.display().to_string(),
                "architecture": c.architecture.name(), "layers": c.num_layers,
                "hidden": c.hidden_size, "labels": c.num_labels, "max_length": c.default_max_length(),
                "positions": c.usable_positions(),
                "template": match &template { Ok(t) => t.name().to_string(), Err(_) => "unknown (--template)".into() },
                "answer_tokens": answers.map(|(t, f)| vec![t, f]),
                "head": if chain { "module chain" } else if c.causal_lm { "answer tokens" } else { "classifier" },
            })
        }
        Err(e) => {
            serde_json::json!({"source": source, "name": name, "path": dir.display().to_string(), "error": e.to_string()})
        }
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    match default_model_dir() {
        Some(d) => rows.push(describe("default", crate::model_spec::DEFAULT_MODEL, &d)),
        None => rows.push(serde_json::json!({"source": "default", "name": crate::model_spec::DEFAULT_MODEL, "error": "not found"})),
    }
    let cache = hf_cache_dir();
    for (id, dir) in cached_models(&cache) {
        rows.push(describe("cache", &id, &dir));
    }
    for spec in &args.model {
        match resolve_model(spec) {
            Ok(dir) => rows.push(describe("given", spec, &dir)),
            Err(e) => rows
                .push(serde_json::json!({"source": "given", "name": spec, "error": e.to_string()})),
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"cache": cache.display().to_string(), "models": rows})
        );
        return Ok(());
    }
    println!("Hugging Face cache: {}", cache.display());
    println!(
        "{:<8} {:<40} {:<11} {:>6} {:>6} {:>6} {:>7} {:>9} {:<15}  path",
        "source", "name", "arch", "layers", "hidden", "labels", "max_len", "positions", "template"
    );
    for r in &rows {
        let s = |k: &str| {
            r.get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        if let Some(e) = r.get("error") {
            println!(
                "{:<8} {:<40} error: {}",
                s("source"),
                s("name"),
                e.as_str().unwrap_or("")
            );
        } else {
            println!(
                "{:<8} {:<40} {:<11} {:>6} {:>6} {:>6} {:>7} {:>9} {:<15}  {}",
                s("source"),
                s("name"),
                s("architecture"),
                s("layers"),
                s("hidden"),
                s("labels"),
                s("max_length"),
                s("positions"),
                s("template"),
                s("path")
            );
        }
    }
    Ok(())
}
