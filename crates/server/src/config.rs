//! Server configuration: a TOML file and/or command-line flags, every field with a default.

use crossrank_engine::{Device, Dtype, Quantize};
use serde::{Deserialize, Serialize};

/// One model served under a name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Name clients put in the request's `model` field.
    pub name: String,
    /// Directory or hub id.
    pub model: String,
    /// Precision of the linear layers.
    #[serde(default)]
    pub quantize: Quantize,
    /// Truncation length (default min(512, the model's positions)).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// A calibration file from `crossrank calibrate --fit` (default: calibration.json in the
    /// model directory, when there is one; "none" turns it off).
    #[serde(default)]
    pub calibration: Option<String>,
    /// Where the model runs: "cpu", "cuda", "cuda:N" or "auto" (default: a GPU when usable).
    #[serde(default)]
    pub device: Device,
    /// GEMM precision on a GPU: "f32", "f16" or "bf16" (default bf16; the CPU runs f32).
    #[serde(default)]
    pub dtype: Option<Dtype>,
}

/// Everything `crossrank serve` can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port (0 = any free port).
    pub port: u16,
    /// Bearer tokens accepted; none = no auth.
    pub api_keys: Vec<String>,
    /// Models; the first is the default.
    pub models: Vec<ModelEntry>,
    /// Token budget of one engine batch, shared by concurrent requests.
    pub max_batch_tokens: usize,
    /// Requests waiting for the engine before new ones get 429.
    pub max_queue: usize,
    /// Most documents in one request (more: 413).
    pub max_documents: usize,
    /// Most bytes in a request body (more: 413).
    pub max_body_bytes: usize,
    /// A request still unanswered after this long gets 503.
    pub request_timeout_ms: u64,
    /// A request whose predicted queue wait plus scoring time exceeds this many milliseconds
    /// is refused at once with 429 and a `Retry-After` (0: admit whenever the queue has room).
    pub max_queue_ms: u64,
    /// Most tokens one rerank request may put through the engine, after chunking and
    /// truncation, special tokens included (more: 413).
    pub max_request_tokens: usize,
    /// Most chunks scored per document (`max_chunks_per_doc` above it: 422).
    pub max_chunks_per_doc: usize,
    /// Most search `candidates` and `top_k` (more: 422).
    pub max_candidates: usize,
    /// Most collections under `collections_dir`; creating one more answers 422.
    pub max_collections: usize,
    /// Most documents in one upload, counted after chunking (more: 413).
    pub max_upload_documents: usize,
    /// After SIGTERM / SIGINT, how long in-flight requests may take before the process exits
    /// anyway.
    pub shutdown_grace_ms: u64,
    /// TEI's `truncate` when the request does not say.
    pub auto_truncate: bool,
    /// Engine threads per model (default: all cores).
    pub threads: Option<usize>,
    /// Directory of the search collections (`/v1/collections/...`); none disables the routes.
    pub collections_dir: Option<std::path::PathBuf>,
    /// Bi-encoder directory for new collections (dense and hybrid retrieval).
    pub embedder: Option<std::path::PathBuf>,
    /// Keep the collections in PostgreSQL + pgvector instead of `collections_dir`:
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB`. Every server on one database serves the
    /// same collections.
    pub store: Option<String>,
    /// Settings of the PostgreSQL store (HNSW parameters, pool, timeouts).
    pub postgres: crossrank_retrieve::store::PgConfig,
    /// Seconds between saves of changed dense indexes to `DIR/NAME/dense` (0: only at
    /// shutdown). A server killed before a save rebuilds them from the stored embeddings.
    pub collection_save_secs: u64,
    /// Memory of each model's pair-score cache in MiB (0: no cache). A (query, document)
    /// pair scored before under the same options is answered from it, bit for bit.
    pub cache_mb: usize,
    /// Fusion of collection searches that do not give their own `fusion` (e.g. the file
    /// `crossrank eval --tune-fusion --fusion-output` writes); none: the defaults.
    pub fusion: Option<crossrank_rank::fusion::FusionConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            api_keys: Vec::new(),
            models: Vec::new(),
            max_batch_tokens: 16_384,
            max_queue: 256,
            max_documents: 10_000,
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout_ms: 120_000,
            max_queue_ms: 10_000,
            max_request_tokens: 131_072,
            max_chunks_per_doc: 64,
            max_candidates: 1_000,
            max_collections: 256,
            max_upload_documents: 1_000,
            shutdown_grace_ms: 30_000,
            auto_truncate: true,
            threads: None,
            collections_dir: None,
            embedder: None,
            store: None,
            postgres: Default::default(),
            collection_save_secs: 30,
            cache_mb: 64,
            fusion: None,
        }
    }
}

impl ServerConfig {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks that every limit is usable (each count at least 1).
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_queue", self.max_queue),
            ("max_documents", self.max_documents),
            ("max_body_bytes", self.max_body_bytes),
            ("max_request_tokens", self.max_request_tokens),
            ("max_chunks_per_doc", self.max_chunks_per_doc),
            ("max_candidates", self.max_candidates),
            ("max_collections", self.max_collections),
            ("max_upload_documents", self.max_upload_documents),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.request_timeout_ms == 0 {
            return Err("request_timeout_ms must be at least 1".into());
        }
        if self.store.is_some() && self.collections_dir.is_some() {
            return Err("give either store (PostgreSQL) or collections_dir, not both".into());
        }
        Ok(())
    }

    /// Every limit by name, as `/info` shows them.
    pub fn limits(&self) -> serde_json::Value {
        serde_json::json!({
            "max_batch_tokens": self.max_batch_tokens,
            "max_queue": self.max_queue,
            "max_queue_ms": self.max_queue_ms,
            "max_documents": self.max_documents,
            "max_body_bytes": self.max_body_bytes,
            "max_request_tokens": self.max_request_tokens,
            "max_chunks_per_doc": self.max_chunks_per_doc,
            "max_candidates": self.max_candidates,
            "max_collections": self.max_collections,
            "max_upload_documents": self.max_upload_documents,
            "request_timeout_ms": self.request_timeout_ms,
            "shutdown_grace_ms": self.shutdown_grace_ms,
            "cache_mb": self.cache_mb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults() {
        let c = ServerConfig::from_toml(
            "port = 9000\napi_keys = [\"k\"]\n[[models]]\nname = \"m\"\nmodel = \"models/x\"\nquantize = \"int8\"\n",
        )
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.max_documents, 10_000);
        assert_eq!(c.models[0].quantize, Quantize::Int8);
        assert_eq!(c.models[0].device, Device::Auto);
        assert_eq!(c.models[0].dtype, None);
        let g = ServerConfig::from_toml(
            "[[models]]\nname = \"g\"\nmodel = \"m\"\ndevice = \"cuda:1\"\ndtype = \"f16\"\n",
        )
        .unwrap();
        assert_eq!(g.models[0].device, Device::Cuda(1));
        assert_eq!(g.models[0].dtype, Some(Dtype::F16));
        let e =
            ServerConfig::from_toml("[[models]]\nname = \"g\"\nmodel = \"m\"\ndevice = \"gpu9\"\n")
                .unwrap_err();
        assert!(e.contains("cpu, cuda, cuda:N or auto"), "{e}");
        assert!(ServerConfig::from_toml("prot = 1")
            .unwrap_err()
            .contains("prot"));
    }
}
