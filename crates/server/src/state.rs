//! The server's shared state: loaded models with their batching queues, config, metrics.

use crate::batcher::QueueLimits;
use crate::config::{ModelEntry, ServerConfig};
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::queued::{QueuedReranker, RequestLimits};
use crate::ServerError;
use crossrank_engine::{resolve_model, CrossEncoder, CrossEncoderOptions, Quantize};
use crossrank_rank::cache::CachedReranker;
use crossrank_rank::calibration::{Calibrated, CalibrationFile};
use crossrank_rank::cascade::{is_cascade_spec, Cascade, CascadeSpec};
use crossrank_rank::hosted::{is_hosted_spec, HostedOptions, HostedReranker};
use crossrank_rank::Reranker;
use crossrank_retrieve::store::{CollectionStore, DirStore, PgStore};
use std::sync::Arc;

/// What serves a model name, for `/info` and `/health` (scoring goes through
/// [`ModelHandle::reranker`] whatever the kind).
pub enum Backend {
    /// A cross-encoder run here behind its batching queue.
    Local {
        /// The model and its queue.
        queued: Arc<QueuedReranker>,
        /// Its weight quantization.
        quantize: Quantize,
        /// The calibration applied to its scores, if any.
        calibration: Option<CalibrationFile>,
    },
    /// A hosted reranker (`cohere:`, `voyage:`, `jina:`, `tei:`, `crossrank:` specs).
    Hosted(Arc<HostedReranker>),
    /// A cascade of other served models (`cascade:FAST>PRECISE@K`).
    Cascade {
        /// The served names of its stages, first first, and each later stage's K.
        stages: Vec<(String, Option<usize>)>,
    },
}

/// A served model.
pub struct ModelHandle {
    /// Name used in requests.
    pub name: String,
    /// What every request scores through: the same trait the CLI and the pipeline use (the
    /// pair-score cache in front of the model when `cache_mb` > 0).
    pub reranker: Arc<dyn Reranker>,
    /// The model's pair-score cache, for `/metrics`.
    pub cache: Option<Cached>,
    /// Local engine or hosted API.
    pub backend: Backend,
}

/// `reranker` behind a pair-score cache of `cache_mb` MiB (none for 0).
type Cached = Arc<CachedReranker<Arc<dyn Reranker>>>;
fn cached(reranker: Arc<dyn Reranker>, cache_mb: usize) -> (Arc<dyn Reranker>, Option<Cached>) {
    if cache_mb == 0 {
        return (reranker, None);
    }
    let cache = Arc::new(CachedReranker::new(
        reranker,
        cache_mb.saturating_mul(1 << 20),
    ));
    (cache.clone(), Some(cache))
}

/// A cascade entry over the served models it names (they are its stages, each with its own
/// queue and cache; the cascade itself is not cached again).
fn cascade(entry: &ModelEntry, models: &[ModelHandle]) -> Result<ModelHandle, ServerError> {
    let err = |m: String| ServerError::Config(format!("model {}: {m}", entry.name));
    let spec = CascadeSpec::parse(&entry.model).map_err(|e| err(e.to_string()))?;
    let stage = |name: &str| -> Result<Arc<dyn Reranker>, ServerError> {
        match models.iter().find(|m| m.name == name) {
            Some(m) => Ok(m.reranker.clone()),
            None => Err(err(format!(
                "cascade stage {name:?} is not a served model; serve it as its own [[models]] \
                 entry (a cascade's stages are other models' names, not cascades)"
            ))),
        }
    };
    let mut then = Vec::new();
    for (name, k) in &spec.then {
        then.push((stage(name)?, *k));
    }
    let reranker = Cascade::new(stage(&spec.first)?, then).map_err(|e| err(e.to_string()))?;
    let mut stages = vec![(spec.first.clone(), None)];
    stages.extend(spec.then.iter().map(|(n, k)| (n.clone(), Some(*k))));
    Ok(ModelHandle {
        name: entry.name.clone(),
        reranker: Arc::new(reranker),
        cache: None,
        backend: Backend::Cascade { stages },
    })
}

/// Shared by every request.
pub struct AppState {
    /// Models, the default first.
    pub models: Vec<ModelHandle>,
    /// The configuration in force.
    pub config: ServerConfig,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The collection store (`--collections DIR` or `--store postgres://...`), if collections
    /// are enabled.
    pub collections: Option<Arc<dyn CollectionStore>>,
    /// Set once shutdown has begun: new requests get 503.
    pub draining: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Loads every configured model and starts its batching worker.
    pub fn load(config: ServerConfig) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        if config.models.is_empty() {
            return Err(ServerError::Config("no models configured".into()));
        }
        let metrics = Arc::new(Metrics::default());
        let mut models = Vec::new();
        for (i, entry) in config.models.iter().enumerate() {
            if config.models[..i].iter().any(|m| m.name == entry.name) {
                return Err(ServerError::Config(format!(
                    "model name {:?} is used twice",
                    entry.name
                )));
            }
            if is_cascade_spec(&entry.model) {
                continue; // once every model it may name is loaded
            }
            if is_hosted_spec(&entry.model) {
                let hosted = HostedReranker::from_spec(&entry.model, HostedOptions::default())
                    .map_err(|e| ServerError::Config(format!("model {}: {e}", entry.name)))?;
                let hosted = Arc::new(hosted);
                let (reranker, cache) = cached(hosted.clone(), config.cache_mb);
                models.push(ModelHandle {
                    name: entry.name.clone(),
                    reranker,
                    cache,
                    backend: Backend::Hosted(hosted),
                });
                continue;
            }
            let err = |source| ServerError::Model {
                name: entry.name.clone(),
                source,
            };
            let dir = resolve_model(&entry.model).map_err(err)?;
            let options = CrossEncoderOptions {
                max_length: entry.max_length,
                threads: config.threads,
                max_batch_tokens: config.max_batch_tokens,
                quantize: entry.quantize,
                device: entry.device,
                dtype: entry.dtype,
                ..Default::default()
            };
            let model = Arc::new(CrossEncoder::load(&dir, options).map_err(err)?);
            let queued = Arc::new(QueuedReranker::new(
                &entry.name,
                model,
                QueueLimits {
                    max_batch_tokens: config.max_batch_tokens,
                    max_queue: config.max_queue,
                    max_queue_ms: config.max_queue_ms,
                },
                RequestLimits {
                    max_request_tokens: config.max_request_tokens,
                    max_chunks_per_doc: config.max_chunks_per_doc,
                },
                metrics.clone(),
            ));
            let calibration = match entry.calibration.as_deref() {
                Some("none") => None,
                Some(path) => Some(CalibrationFile::read(std::path::Path::new(path))),
                None => CalibrationFile::beside(&dir).transpose(),
            }
            .transpose()
            .map_err(|e| ServerError::Config(format!("model {}: {e}", entry.name)))?;
            let scorer: Arc<dyn Reranker> = match &calibration {
                Some(c) => Arc::new(Calibrated::new(queued.clone(), c.calibration.clone())),
                None => queued.clone(),
            };
            let (reranker, cache) = cached(scorer, config.cache_mb);
            models.push(ModelHandle {
                name: entry.name.clone(),
                reranker,
                cache,
                backend: Backend::Local {
                    queued,
                    quantize: entry.quantize,
                    calibration,
                },
            });
        }
        for (i, entry) in config.models.iter().enumerate() {
            if is_cascade_spec(&entry.model) {
                let handle = cascade(entry, &models)?;
                models.insert(i, handle);
            }
        }
        let collections = match (&config.store, &config.collections_dir) {
            (Some(_), Some(_)) => {
                return Err(ServerError::Config(
                    "give either store (PostgreSQL) or collections_dir, not both".into(),
                ))
            }
            (Some(url), None) => Some(Arc::new(
                PgStore::new(
                    url,
                    config.embedder.as_deref(),
                    config.max_collections,
                    config.postgres.clone(),
                )
                .map_err(|e| ServerError::Config(e.to_string()))?,
            ) as Arc<dyn CollectionStore>),
            (None, Some(root)) => Some(Arc::new(DirStore::new(
                root,
                config.embedder.as_deref(),
                config.max_collections,
            )) as Arc<dyn CollectionStore>),
            (None, None) => None,
        };
        Ok(AppState {
            models,
            config,
            metrics,
            collections,
            draining: Default::default(),
        })
    }

    /// The model a request names, or the default; unknown names are a 404 listing the known.
    pub fn model(&self, name: Option<&str>) -> Result<&ModelHandle, ApiError> {
        match name {
            None => Ok(&self.models[0]),
            Some(n) => self.models.iter().find(|m| m.name == n).ok_or_else(|| {
                let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                ApiError::not_found(format!(
                    "model {n:?} is not served here; known models: {}",
                    known.join(", ")
                ))
            }),
        }
    }
}
