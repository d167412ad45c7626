//! `crossrank models`: what models are at hand.

use crate::model_spec::default_model_dir;
use anyhow::Result;
use crossrank_engine::backend::cuda;
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

fn describe(
    source: &str,
    name: &str,
    dir: &Path,
    gpu: &Result<cuda::GpuInfo, String>,
) -> serde_json::Value {
    match ModelConfig::from_file(&dir.join("config.json")) {
        Ok(c) => {
            let template = Template::detect(dir, &c);
            let answers = template
                .as_ref()
                .ok()
                .and_then(|t| t.answer_tokens())
                .filter(|_| c.causal_lm);
            let chain = dir.join("modules.json").is_file() && !c.has_classifier;
            // Where `--device auto` (the default) runs it, and in what precision.
            let on_gpu = gpu.is_ok() && cuda::supports(c.architecture);
            let (device, dtype) = if on_gpu {
                ("cuda:0", "bf16")
            } else {
                ("cpu", "f32")
            };
            serde_json::json!({
                "source": source, "name": name, "path": dir.display().to_string(),
                "architecture": c.architecture.name(), "layers": c.num_layers,
                "hidden": c.hidden_size, "labels": c.num_labels, "max_length": c.default_max_length(),
                "positions": c.usable_positions(),
                "template": match &template { Ok(t) => t.name().to_string(), Err(_) => "unknown (--template)".into() },
                "answer_tokens": answers.map(|(t, f)| vec![t, f]),
                "head": if chain { "module chain" } else if c.causal_lm { "answer tokens" } else { "classifier" },
                "device": device, "dtype": dtype,
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
    // The GPU `--device auto` would take, or why there is none.
    let gpu = cuda::probe(0);
    match default_model_dir() {
        Some(d) => rows.push(describe("default", crate::model_spec::DEFAULT_MODEL, &d, &gpu)),
        None => rows.push(serde_json::json!({"source": "default", "name": crate::model_spec::DEFAULT_MODEL, "error": "not found"})),
    }
    let cache = hf_cache_dir();
    for (id, dir) in cached_models(&cache) {
        rows.push(describe("cache", &id, &dir, &gpu));
    }
    for spec in &args.model {
        match resolve_model(spec) {
            Ok(dir) => rows.push(describe("given", spec, &dir, &gpu)),
            Err(e) => rows
                .push(serde_json::json!({"source": "given", "name": spec, "error": e.to_string()})),
        }
    }
    let gpu_json = match &gpu {
        Ok(g) => serde_json::json!({
            "device": format!("cuda:{}", g.ordinal), "name": g.name, "memory_bytes": g.memory,
            "compute_capability": format!("{}.{}", g.capability.0, g.capability.1),
        }),
        Err(why) => serde_json::json!({"device": null, "why": why}),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"cache": cache.display().to_string(), "gpu": gpu_json, "models": rows})
        );
        return Ok(());
    }
    println!("Hugging Face cache: {}", cache.display());
    match &gpu {
        Ok(g) => println!(
            "GPU: cuda:{} {} ({:.1} GiB, compute capability {}.{}); BERT / XLM-R models run there by default",
            g.ordinal,
            g.name,
            g.memory as f64 / (1u64 << 30) as f64,
            g.capability.0,
            g.capability.1
        ),
        Err(why) => println!("GPU: none ({why}); models run on the CPU"),
    }
    println!(
        "{:<8} {:<40} {:<11} {:>6} {:>6} {:>6} {:>7} {:>9} {:<15} {:<7}  path",
        "source",
        "name",
        "arch",
        "layers",
        "hidden",
        "labels",
        "max_len",
        "positions",
        "template",
        "device"
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
                "{:<8} {:<40} {:<11} {:>6} {:>6} {:>6} {:>7} {:>9} {:<15} {:<7}  {}",
                s("source"),
                s("name"),
                s("architecture"),
                s("layers"),
                s("hidden"),
                s("labels"),
                s("max_length"),
                s("positions"),
                s("template"),
                s("device"),
                s("path")
            );
        }
    }
    Ok(())
}
