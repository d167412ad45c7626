//! Which model a command runs: `--model` (directory or hub id) or the default shipped with
//! crossrank.

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use crossrank_engine::{
    resolve_model, CrossEncoder, CrossEncoderOptions, Device, Dtype, Quantize, Template,
};
use crossrank_rank::calibration::{Calibrated, CalibrationFile};
use crossrank_rank::cascade::{is_cascade_spec, Cascade, CascadeSpec};
use crossrank_rank::hosted::{is_hosted_spec, HostedOptions, HostedReranker};
use crossrank_rank::long_docs::LongDocs;
use crossrank_rank::{LocalReranker, Reranker};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Resolves a bi-encoder `--embedder` (directory or hub id, like `--model`) to its directory.
pub fn resolve_embedder(spec: &str) -> Result<PathBuf> {
    resolve_model(spec).with_context(|| format!("--embedder {spec}"))
}

/// Name of the default model directory.
pub const DEFAULT_MODEL: &str = "minilm-l6-rerank";

/// Model options shared by the commands that run a model.
#[derive(ClapArgs, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory, Hugging Face hub id (org/name), or where a reranker is accepted a
    /// hosted one: cohere:MODEL, voyage:MODEL, jina:MODEL, tei:URL, crossrank:URL[#MODEL]
    /// (keys from COHERE_API_KEY / VOYAGE_API_KEY / JINA_API_KEY), or a cascade
    /// 'cascade:FAST>PRECISE@K' (each stage a spec, optionally with
    /// [quantize=int8,max_length=N,device=D,dtype=T]; PRECISE rescores FAST's best K).
    /// Default: the bundled minilm-l6-rerank.
    #[arg(long, short, visible_alias = "reranker")]
    pub model: Option<String>,
    /// Truncate each pair to this many tokens (default: min(512, the model's positions)).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most pairs per forward pass (default: as many as fit 16,384 tokens).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Precision of the linear layers: none (fp32, reference scores) or int8 (faster).
    #[arg(long, value_enum, default_value_t = QuantizeArg::None)]
    pub quantize: QuantizeArg,
    /// Where the model runs: cpu, cuda (the first GPU), cuda:N, or auto (default: a GPU when a
    /// CUDA driver, a device and the model's architecture allow it, else the CPU).
    #[arg(long)]
    pub device: Option<Device>,
    /// GEMM precision on a GPU: f32, f16 or bf16 (default bf16); the CPU runs f32 (see
    /// --quantize).
    #[arg(long)]
    pub dtype: Option<Dtype>,
    /// Prompt template of a decoder reranker (default: found from the checkpoint).
    #[arg(long, value_enum)]
    pub template: Option<TemplateArg>,
    /// Instruction for rerankers whose template takes one (Qwen3-Reranker, mxbai-rerank-v2);
    /// ignored by the others. Default: the template's own.
    #[arg(long)]
    pub instruction: Option<String>,
    /// Documents longer than the model's window: truncate them, chunk them (score windows of
    /// the first --max-tokens-per-doc tokens, at most --max-chunks-per-doc, keep the best:
    /// what the server's Cohere-style routes do), or reject them with an error.
    #[arg(long, value_enum, default_value_t = LongDocsArg::Truncate)]
    pub long_docs: LongDocsArg,
    /// With --long-docs chunk: tokens of a document kept (Cohere's default).
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_per_doc: usize,
    /// With --long-docs chunk: most chunks scored per document.
    #[arg(long, default_value_t = 10)]
    pub max_chunks_per_doc: usize,
    /// Calibration of the scores: a file written by `crossrank calibrate --fit`, or `none`.
    /// Default: calibration.json in the model directory, when there is one.
    #[arg(long)]
    pub calibration: Option<String>,
}

/// `--long-docs` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDocsArg {
    /// Truncate each pair to the window (the end of the document is dropped).
    Truncate,
    /// Score window-sized chunks, keep the best.
    Chunk,
    /// Fail on a document that does not fit.
    Reject,
}

/// `--template` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateArg {
    /// Qwen3-Reranker's prompt, answer tokens yes / no.
    Qwen3Reranker,
    /// mxbai-rerank-v2's prompt, answer tokens 1 / 0.
    MxbaiRerankV2,
    /// No template: the tokenizer's pair encoding.
    None,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Template {
        match t {
            TemplateArg::Qwen3Reranker => Template::Qwen3Reranker,
            TemplateArg::MxbaiRerankV2 => Template::MxbaiRerankV2,
            TemplateArg::None => Template::None,
        }
    }
}

/// `--quantize` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizeArg {
    /// fp32.
    None,
    /// int8 weights and activations (VNNI).
    Int8,
}

impl From<QuantizeArg> for Quantize {
    fn from(q: QuantizeArg) -> Quantize {
        match q {
            QuantizeArg::None => Quantize::None,
            QuantizeArg::Int8 => Quantize::Int8,
        }
    }
}

/// Where the default model is: `$CROSSRANK_DEFAULT_MODEL`, beside the executable, or in the
/// source tree the binary was built from.
pub fn default_model_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CROSSRANK_DEFAULT_MODEL") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("models").join(DEFAULT_MODEL));
            candidates.push(dir.join("../share/crossrank/models").join(DEFAULT_MODEL));
            // target/{debug,release}/crossrank in a checkout
            candidates.push(dir.join("../../models").join(DEFAULT_MODEL));
        }
    }
    candidates.push(
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")).join(DEFAULT_MODEL),
    );
    candidates
        .into_iter()
        .find(|p| p.join("config.json").is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}

impl ModelArgs {
    /// The model directory these arguments name.
    pub fn dir(&self) -> Result<PathBuf> {
        match &self.model {
            Some(spec) => Ok(resolve_model(spec)?),
            None => default_model_dir().context(
                "the default model (models/minilm-l6-rerank) was not found beside the executable or in the source tree; set CROSSRANK_DEFAULT_MODEL or pass --model DIR",
            ),
        }
    }

    /// The reranker these arguments name, its scores calibrated when a calibration applies
    /// (see `--calibration`).
    pub fn reranker(&self) -> Result<Box<dyn Reranker>> {
        let raw = self.raw_reranker()?;
        let spec = self.model.as_deref().unwrap_or_default();
        let file = match self.calibration.as_deref() {
            Some("none") => None,
            Some(path) => Some(CalibrationFile::read(Path::new(path))?),
            None if is_cascade_spec(spec) || is_hosted_spec(spec) => None,
            None => CalibrationFile::beside(&self.dir()?)?,
        };
        Ok(match file {
            Some(f) => Box::new(Calibrated::new(
                Arc::<dyn Reranker>::from(raw),
                f.calibration,
            )),
            None => raw,
        })
    }

    /// What a calibration file records as its model: the spec, or the model directory.
    pub fn reranker_name(&self) -> Result<String> {
        match self.model.as_deref() {
            Some(s) if is_cascade_spec(s) || is_hosted_spec(s) => Ok(s.to_string()),
            _ => Ok(self.dir()?.display().to_string()),
        }
    }

    /// The reranker these arguments name, uncalibrated: a cascade for `cascade:...`, hosted
    /// for a provider spec, else the local model.
    pub fn raw_reranker(&self) -> Result<Box<dyn Reranker>> {
        if let Some(spec) = self.model.as_deref().filter(|s| is_cascade_spec(s)) {
            return Ok(Box::new(self.cascade(spec)?));
        }
        if let Some(spec) = self.model.as_deref().filter(|s| is_hosted_spec(s)) {
            return Ok(Box::new(
                HostedReranker::from_spec(spec, HostedOptions::default())?
                    .with_long_docs(self.long_docs()),
            ));
        }
        Ok(Box::new(
            LocalReranker::new(self.load()?)
                .with_instruction(self.instruction.clone())
                .with_long_docs(self.long_docs()),
        ))
    }

    /// The cascade `spec` names: each stage a model spec as `--model` takes, optionally with
    /// its own `[quantize=int8,max_length=N,device=D,dtype=T]` (other options as given on the
    /// command line).
    pub fn cascade(&self, spec: &str) -> Result<Cascade> {
        let parsed = CascadeSpec::parse(spec)?;
        let stage = |s: &str| -> Result<Arc<dyn Reranker>> {
            let args = self.stage_args(s)?;
            let r = args
                .reranker()
                .with_context(|| format!("cascade stage {s}"))?;
            Ok(Arc::from(r))
        };
        let first = stage(&parsed.first)?;
        let mut then = Vec::new();
        for (s, k) in &parsed.then {
            then.push((stage(s)?, *k));
        }
        Ok(Cascade::new(first, then)?.with_name(spec))
    }

    /// These arguments for one cascade stage `SPEC[key=value,...]`.
    fn stage_args(&self, stage: &str) -> Result<ModelArgs> {
        let mut args = self.clone();
        let (spec, opts) = match stage.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((spec, opts)) => (spec, opts),
            None => (stage, ""),
        };
        if is_cascade_spec(spec) {
            bail!("cascade stage {stage}: a stage cannot be a cascade");
        }
        args.model = Some(spec.to_string());
        args.calibration = None; // each stage's own, beside its model
        for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("quantize", "int8")) => args.quantize = QuantizeArg::Int8,
                Some(("quantize", "none")) => args.quantize = QuantizeArg::None,
                Some(("device", d)) => {
                    args.device = Some(
                        d.parse()
                            .map_err(|e| anyhow::anyhow!("cascade stage {stage}: {e}"))?,
                    )
                }
                Some(("dtype", d)) => {
                    args.dtype = Some(
                        d.parse()
                            .map_err(|e| anyhow::anyhow!("cascade stage {stage}: {e}"))?,
                    )
                }
                Some(("max_length", n)) => {
                    args.max_length = Some(
                        n.parse()
                            .ok()
                            .filter(|&n: &usize| n >= 1)
                            .with_context(|| {
                                format!("cascade stage {stage}: max_length={n} is not a count >= 1")
                            })?,
                    )
                }
                _ => bail!(
                    "cascade stage {stage}: unknown option {opt:?} (quantize=int8|none, \
                     max_length=N, device=cpu|cuda[:N]|auto, dtype=f32|f16|bf16)"
                ),
            }
        }
        Ok(args)
    }

    /// Refuses a `--long-docs` other than truncate for commands that score pairs as they are.
    pub fn truncation_only(&self, command: &str) -> Result<()> {
        if self.long_docs != LongDocsArg::Truncate {
            anyhow::bail!(
                "crossrank {command} scores each pair as CrossEncoder.predict does (truncated); \
                 --long-docs applies to rerank, search, eval and calibrate"
            );
        }
        Ok(())
    }

    /// The long-document policy these arguments name.
    pub fn long_docs(&self) -> LongDocs {
        match self.long_docs {
            LongDocsArg::Truncate => LongDocs::default(),
            LongDocsArg::Chunk => LongDocs::Chunk {
                max_tokens: self.max_tokens_per_doc.max(1),
                max_chunks: self.max_chunks_per_doc.max(1),
            },
            LongDocsArg::Reject => LongDocs::Reject,
        }
    }

    /// Loads the model (a local one; hosted specs are refused here).
    pub fn load(&self) -> Result<CrossEncoder> {
        if let Some(spec) = self.model.as_deref().filter(|s| is_cascade_spec(s)) {
            bail!("{spec} is a cascade; this command needs one local model");
        }
        if let Some(spec) = self.model.as_deref().filter(|s| is_hosted_spec(s)) {
            anyhow::bail!("{spec} is a hosted reranker; this command needs a local model");
        }
        let dir = self.dir()?;
        let options = CrossEncoderOptions {
            max_length: self.max_length,
            threads: self.threads,
            max_batch_pairs: self.batch_size,
            quantize: self.quantize.into(),
            template: self.template.map(Template::from),
            device: self.device.unwrap_or_default(),
            dtype: self.dtype,
            ..Default::default()
        };
        let model = CrossEncoder::load(&dir, options)
            .with_context(|| format!("loading model {}", dir.display()))?;
        // Say where an explicit --device put the model (auto's choice, or the GPU taken).
        if let (Some(_), Some(note)) = (self.device, model.device_note()) {
            eprintln!("{note}");
        }
        Ok(model)
    }
}
