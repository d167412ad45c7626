//! `crossrank._crossrank`: the engine's cross-encoder as a Python class. The public API,
//! `crossrank.CrossEncoder` (sentence-transformers' argument names, numpy results, progress
//! bars, activations), is Python in `python/crossrank/__init__.py` on top of this.
//!
//! Scoring releases the GIL, so Python threads score in parallel with each other and with the
//! rest of the program; errors are `FileNotFoundError` (no such model) and `ValueError`
//! (anything the engine refuses), carrying the engine's message.

use crossrank_engine::{
    resolve_model, CrossEncoder, CrossEncoderOptions, Device, Dtype, EngineError, Quantize,
};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;

fn to_py(e: EngineError) -> PyErr {
    match e {
        EngineError::Resolve(m) => PyFileNotFoundError::new_err(m),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A loaded cross-encoder. Thread-safe: calls from several threads are served in turn by
/// the engine (each call uses the model's thread pool).
#[pyclass(frozen, module = "crossrank._crossrank")]
struct Model {
    inner: CrossEncoder,
    instruction: Option<String>,
}

#[pymethods]
impl Model {
    /// Loads `path` (a model directory or a cached hub id).
    #[new]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    #[pyo3(signature = (path, max_length=None, quantize=None, threads=None, instruction=None, device=None, dtype=None))]
    fn new(
        py: Python<'_>,
        path: &str,
        max_length: Option<usize>,
        quantize: Option<&str>,
        threads: Option<usize>,
        instruction: Option<String>,
        device: Option<&str>,
        dtype: Option<&str>,
    ) -> PyResult<Self> {
        let device = match device {
            None => Device::Auto,
            Some(d) => d.parse::<Device>().map_err(PyValueError::new_err)?,
        };
        let dtype = dtype
            .map(|d| d.parse::<Dtype>().map_err(PyValueError::new_err))
            .transpose()?;
        let quantize = match quantize {
            None | Some("none") => Quantize::None,
            Some("int8") => Quantize::Int8,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "quantize must be None, \"none\" or \"int8\", not {other:?}"
                )))
            }
        };
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be >= 1"));
        }
        let options = CrossEncoderOptions {
            max_length,
            threads,
            quantize,
            device,
            dtype,
            ..Default::default()
        };
        let inner = py.allow_threads(|| -> Result<CrossEncoder, EngineError> {
            let dir = resolve_model(path)?;
            CrossEncoder::load(&dir, options)
        });
        Ok(Model {
            inner: inner.map_err(to_py)?,
            instruction,
        })
    }

    /// Scores `(query, document)` pairs in order: `(logits, scores)`, one list of logits
    /// (one per label) and one score per pair (the model's default activation).
    #[pyo3(signature = (pairs, instruction=None))]
    fn predict(
        &self,
        py: Python<'_>,
        pairs: Vec<(String, String)>,
        instruction: Option<String>,
    ) -> PyResult<(Vec<Vec<f32>>, Vec<f32>)> {
        let instruction = instruction.or_else(|| self.instruction.clone());
        let preds = py
            .allow_threads(|| self.inner.predict_with(&pairs, instruction.as_deref()))
            .map_err(to_py)?;
        Ok(preds.into_iter().map(|p| (p.logits, p.score)).unzip())
    }

    /// Labels of the classifier head (1, or 2 for two-way softmax models).
    #[getter]
    fn num_labels(&self) -> usize {
        self.inner.config().num_labels
    }

    /// Tokens a pair is truncated to.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.max_length()
    }

    /// The model directory.
    #[getter]
    fn path(&self) -> String {
        self.inner.dir().display().to_string()
    }

    /// The architecture (bert, xlm-roberta, modernbert, qwen3, ...).
    #[getter]
    fn architecture(&self) -> String {
        self.inner.config().architecture.name().to_string()
    }

    /// Where it runs.
    #[getter]
    fn device(&self) -> String {
        self.inner.device()
    }

    /// The GEMM precision it runs in ("f32", "f16", "bf16").
    #[getter]
    fn dtype(&self) -> String {
        self.inner.dtype().name().to_string()
    }

    /// Threads of its pool.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    /// The default activation: "sigmoid" (softmax[1] for two labels) or "identity".
    #[getter]
    fn activation(&self) -> &'static str {
        match self.inner.score_activation() {
            crossrank_engine::ScoreActivation::Sigmoid => "sigmoid",
            crossrank_engine::ScoreActivation::Identity => "identity",
        }
    }
}

/// The extension module.
#[pymodule]
fn _crossrank(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
