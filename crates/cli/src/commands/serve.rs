//! `crossrank serve`: the HTTP server.

use crate::model_spec::{default_model_dir, QuantizeArg, DEFAULT_MODEL};
use anyhow::{bail, Context, Result};
use crossrank_engine::{Device, Dtype, Quantize};
use crossrank_server::{ModelEntry, ServerConfig};
use std::path::{Path, PathBuf};

/// Arguments of `serve`; flags override the `--config` file.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model to serve, as NAME=PATH_OR_ID or PATH_OR_ID (named after its last path part);
    /// repeatable; the first is the default. Without any, the bundled default model.
    #[arg(long = "model", short = 'm')]
    pub models: Vec<String>,
    /// TOML configuration file (fields as in `ServerConfig`, models as [[models]]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (0: any free port; the chosen address is printed).
    #[arg(long)]
    pub port: Option<u16>,
    /// Accepted bearer token; repeatable. Also read from CROSSRANK_API_KEY.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Token budget of one engine batch.
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Requests waiting per model before 429.
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Most documents per request before 413.
    #[arg(long)]
    pub max_documents: Option<usize>,
    /// Per-request timeout in milliseconds (503 after it).
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Refuse (429) a request whose predicted queue wait plus scoring time exceeds this
    /// (0: no deadline; default 10000).
    #[arg(long)]
    pub max_queue_ms: Option<u64>,
    /// Most tokens one rerank request may put through the engine (default 131072).
    #[arg(long)]
    pub max_request_tokens: Option<usize>,
    /// Most chunks per document a request may ask for (default 64).
    #[arg(long)]
    pub max_chunks_per_doc: Option<usize>,
    /// Most search candidates / top_k (default 1000).
    #[arg(long)]
    pub max_candidates: Option<usize>,
    /// Most collections under --collections (default 256).
    #[arg(long)]
    pub max_collections: Option<usize>,
    /// Most documents (chunks) per upload (default 1000).
    #[arg(long)]
    pub max_upload_documents: Option<usize>,
    /// Most bytes in a request body (default 33554432).
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// After SIGTERM, milliseconds in-flight requests may take before exit (default 30000).
    #[arg(long)]
    pub shutdown_grace_ms: Option<u64>,
    /// Engine threads per model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Precision of the models given with --model.
    #[arg(long, value_enum, default_value_t = QuantizeArg::None)]
    pub quantize: QuantizeArg,
    /// Where the models given with --model run: cpu, cuda, cuda:N or auto (default auto: a
    /// GPU when a CUDA driver, a device and the model's architecture allow it).
    #[arg(long)]
    pub device: Option<Device>,
    /// GEMM precision of the models given with --model on a GPU: f32, f16 or bf16 (default
    /// bf16).
    #[arg(long)]
    pub dtype: Option<Dtype>,
    /// Truncation length of the models given with --model.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Directory of search collections served under /v1/collections/{name}/...
    #[arg(long)]
    pub collections: Option<PathBuf>,
    /// Seconds between saves of changed dense indexes (0: only at shutdown; default 30).
    #[arg(long)]
    pub collection_save_secs: Option<u64>,
    /// Bi-encoder for new collections (dense / hybrid retrieval; directory or hub id).
    #[arg(long)]
    pub embedder: Option<String>,
    /// Serve the collections of a PostgreSQL + pgvector database instead of a directory:
    /// postgres://USER[:PASSWORD]@HOST:PORT/DB (or CROSSRANK_STORE). Any number of servers on
    /// one database serve the same collections.
    #[arg(
        long,
        env = "CROSSRANK_STORE",
        hide_env_values = true,
        conflicts_with = "collections"
    )]
    pub store: Option<String>,
    /// Memory of each model's pair-score cache in MiB (0: off; default 64).
    #[arg(long)]
    pub cache_mb: Option<usize>,
    /// Fusion TOML for collection searches that give none (as `search --fusion`; e.g. what
    /// `eval --tune-fusion --fusion-output` wrote).
    #[arg(long)]
    pub fusion: Option<PathBuf>,
}

fn entry(spec: &str, quantize: Quantize, args: &Args) -> ModelEntry {
    let (name, model) = match spec.split_once('=') {
        Some((n, m)) if !n.is_empty() => (n.to_string(), m.to_string()),
        _ => {
            let name = Path::new(spec.trim_end_matches('/'))
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.to_string());
            (name, spec.to_string())
        }
    };
    ModelEntry {
        name,
        model,
        quantize,
        max_length: args.max_length,
        calibration: None,
        device: args.device.unwrap_or_default(),
        dtype: args.dtype,
    }
}

/// Builds the configuration from the file and flags.
pub fn config(args: &Args) -> Result<ServerConfig> {
    let mut c = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            ServerConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => ServerConfig::default(),
    };
    let quantize = match args.quantize {
        QuantizeArg::None => Quantize::None,
        QuantizeArg::Int8 => Quantize::Int8,
    };
    if !args.models.is_empty() {
        c.models = args
            .models
            .iter()
            .map(|m| entry(m, quantize, args))
            .collect();
    }
    if c.models.is_empty() {
        let dir = default_model_dir()
            .context("no --model given and the bundled default model was not found")?;
        c.models.push(ModelEntry {
            name: DEFAULT_MODEL.into(),
            model: dir.display().to_string(),
            quantize,
            max_length: args.max_length,
            calibration: None,
            device: args.device.unwrap_or_default(),
            dtype: args.dtype,
        });
    }
    if let Some(h) = &args.host {
        c.host = h.clone();
    }
    if let Some(p) = args.port {
        c.port = p;
    }
    c.api_keys.extend(args.api_keys.iter().cloned());
    if let Ok(k) = std::env::var("CROSSRANK_API_KEY") {
        if !k.is_empty() {
            c.api_keys.push(k);
        }
    }
    if let Some(v) = args.max_batch_tokens {
        c.max_batch_tokens = v;
    }
    if let Some(v) = args.max_queue {
        c.max_queue = v;
    }
    if let Some(v) = args.max_documents {
        c.max_documents = v;
    }
    if let Some(v) = args.request_timeout_ms {
        c.request_timeout_ms = v;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field { c.$field = v; } )* };
    }
    set!(
        max_queue_ms,
        max_request_tokens,
        max_chunks_per_doc,
        max_candidates,
        max_collections,
        max_upload_documents,
        max_body_bytes,
        shutdown_grace_ms
    );
    if args.threads.is_some() {
        c.threads = args.threads;
    }
    if args.collections.is_some() {
        c.collections_dir = args.collections.clone();
    }
    if args.store.is_some() {
        c.store = args.store.clone();
    }
    if let Some(v) = args.collection_save_secs {
        c.collection_save_secs = v;
    }
    if let Some(v) = args.cache_mb {
        c.cache_mb = v;
    }
    if let Some(p) = &args.fusion {
        let t =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        c.fusion = Some(toml::from_str(&t).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
    }
    if let Some(e) = &args.embedder {
        c.embedder = Some(PathBuf::from(e));
    }
    if let Some(e) = c.embedder.take() {
        c.embedder = Some(crate::model_spec::resolve_embedder(&e.to_string_lossy())?);
    }
    c.validate()
        .map_err(|e| anyhow::anyhow!("invalid server configuration: {e}"))?;
    if c.max_batch_tokens < 512 {
        bail!("--max-batch-tokens must be at least 512 (one full-length pair)");
    }
    Ok(c)
}

/// Runs the server until SIGINT / SIGTERM.
pub fn run(args: Args) -> Result<()> {
    let config = config(&args)?;
    crossrank_server::run(config)?;
    Ok(())
}
