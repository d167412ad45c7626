//! The CUDA backend: cuBLAS GEMMs and NVRTC-compiled kernels on an NVIDIA GPU, loaded at run
//! time (no CUDA toolkit at build time; a host without a GPU never opens a CUDA library unless
//! asked to).
//!
//! Runs the BERT / XLM-RoBERTa encoder on packed tokens (variable-length attention, no
//! padding) with fp32 activations, norms and softmax; `--dtype f16 | bf16` rounds the GEMM
//! operands (weights once at upload, activations per product) and accumulates in fp32. The
//! classification head (two small products per sequence) runs on the host in fp32, as the CPU
//! backend runs it.

mod encoder;
pub mod libs;

use super::Backend;
use crate::config::{Architecture, ModelConfig};
use crate::device::Dtype;
use crate::error::{EngineError, Result};
use crate::models::encoder::{ClassifierHead, PackedBatch};
use crate::weights::Weights;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use encoder::{Arena, DeviceEncoder};
use libs::Lib;
use std::sync::{Arc, Mutex};

/// The kernels' CUDA C source, compiled by NVRTC when a model is loaded onto a GPU.
pub const KERNEL_SOURCE: &str = include_str!("kernels.cu");

/// The entry points of [`KERNEL_SOURCE`].
pub const KERNELS: [&str; 6] = [
    "embed_layer_norm",
    "bias_act",
    "bias_residual_layer_norm",
    "attention",
    "first_rows",
    "to_half",
];

fn device_error(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Device(format!("{what}: {e}"))
}

/// Compiles [`KERNEL_SOURCE`] to PTX for a GPU architecture such as `sm_90` (needs libnvrtc,
/// not a GPU).
pub fn compile_kernels(arch: &str) -> Result<String> {
    libs::ensure(Lib::Nvrtc).map_err(EngineError::Device)?;
    compile(arch).map(|p| p.to_src())
}

fn compile(arch: &str) -> Result<Ptx> {
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={arch}")],
        ..Default::default()
    };
    compile_ptx_with_opts(KERNEL_SOURCE, opts).map_err(|e| {
        let detail = match &e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        EngineError::Device(format!(
            "NVRTC could not compile the kernels for {arch}: {detail}"
        ))
    })
}

/// What [`probe`] found: a usable GPU.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    /// The device's ordinal.
    pub ordinal: usize,
    /// Its name, as the driver reports it.
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    /// Total memory in bytes.
    pub memory: usize,
}

/// Whether GPU `ordinal` can be used: the driver library loads, it reports the device, and the
/// device is Ampere or newer (bf16 GEMMs). The error says what is missing.
pub fn probe(ordinal: usize) -> std::result::Result<GpuInfo, String> {
    libs::ensure(Lib::Driver).map_err(|e| format!("no CUDA driver: {e}"))?;
    let count = CudaContext::device_count().map_err(|e| format!("CUDA driver: {e}"))?;
    if count <= 0 {
        return Err("the CUDA driver reports no GPU".into());
    }
    if ordinal >= count as usize {
        return Err(format!(
            "cuda:{ordinal} does not exist: the driver reports {count} GPU(s), cuda:0..cuda:{}",
            count - 1
        ));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| format!("cuda:{ordinal}: {e}"))?;
    let capability = ctx
        .compute_capability()
        .map_err(|e| format!("cuda:{ordinal}: {e}"))?;
    let name = ctx.name().unwrap_or_else(|_| "NVIDIA GPU".into());
    let memory = ctx.total_mem().unwrap_or(0);
    if capability.0 < 8 {
        return Err(format!(
            "cuda:{ordinal} ({name}) has compute capability {}.{}; the CUDA backend needs 8.0 or newer",
            capability.0, capability.1
        ));
    }
    Ok(GpuInfo {
        ordinal,
        name,
        capability,
        memory,
    })
}

/// The architectures the CUDA backend runs.
pub fn supports(architecture: Architecture) -> bool {
    matches!(architecture, Architecture::Bert | Architecture::XlmRoberta)
}

/// The kernels of one loaded module.
pub(crate) struct Kernels {
    _module: Arc<CudaModule>,
    pub embed: CudaFunction,
    pub bias_act: CudaFunction,
    pub bias_residual_ln: CudaFunction,
    pub attention: CudaFunction,
    pub first_rows: CudaFunction,
    pub to_half: CudaFunction,
}

/// A sequence classifier on one GPU.
pub struct CudaBackend {
    info: GpuInfo,
    dtype: Dtype,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    encoder: DeviceEncoder,
    head: ClassifierHead,
    arena: Mutex<Arena>,
}

impl CudaBackend {
    /// Uploads `config`'s model from `weights` to the GPU `info` describes (from [`probe`]).
    pub fn load(
        config: &ModelConfig,
        weights: &Weights,
        info: GpuInfo,
        dtype: Dtype,
    ) -> Result<CudaBackend> {
        let (tensors, head) = match config.architecture {
            Architecture::Bert => crate::models::bert::tensors(config, weights)?,
            Architecture::XlmRoberta => crate::models::xlm_roberta::tensors(config, weights)?,
            other => {
                return Err(EngineError::Device(format!(
                    "the CUDA backend runs BERT and XLM-RoBERTa cross-encoders; {other:?} runs on --device cpu"
                )))
            }
        };
        libs::ensure(Lib::Cublas).map_err(EngineError::Device)?;
        libs::ensure(Lib::Nvrtc).map_err(EngineError::Device)?;
        let ord = info.ordinal;
        let ctx = CudaContext::new(ord).map_err(|e| device_error(&format!("cuda:{ord}"), e))?;
        // SAFETY: the backend issues all its work on one stream, in order, so cudarc's
        // per-buffer events (for cross-stream ordering) are not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = info.capability;
        let ptx = compile(&format!("sm_{major}{minor}"))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| device_error("loading the kernels", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| device_error(&format!("kernel {name}"), e))
        };
        let kernels = Kernels {
            embed: f("embed_layer_norm")?,
            bias_act: f("bias_act")?,
            bias_residual_ln: f("bias_residual_layer_norm")?,
            attention: f("attention")?,
            first_rows: f("first_rows")?,
            to_half: f("to_half")?,
            _module: module,
        };
        let encoder = DeviceEncoder::upload(&stream, tensors, dtype)?;
        let arena = Arena::default();
        Ok(CudaBackend {
            info,
            dtype,
            stream,
            kernels,
            encoder,
            head,
            arena: Mutex::new(arena),
        })
    }
}

impl Backend for CudaBackend {
    fn device(&self) -> String {
        format!("cuda:{}", self.info.ordinal)
    }

    fn device_name(&self) -> String {
        self.info.name.clone()
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn memory_bytes(&self) -> Option<usize> {
        let arena = self.arena.lock().unwrap_or_else(|p| p.into_inner());
        Some(self.encoder.bytes() + arena.bytes())
    }

    fn threads(&self) -> usize {
        1
    }

    fn classify(&self, batch: &PackedBatch) -> Result<Vec<Vec<f32>>> {
        if batch.sequences() == 0 {
            return Ok(Vec::new());
        }
        let mut arena = self.arena.lock().unwrap_or_else(|p| p.into_inner());
        let first =
            self.encoder
                .forward_first_rows(&self.stream, &self.kernels, &mut arena, batch)?;
        Ok(self.head.logits(&first))
    }

    fn flops(&self, len: usize) -> (f64, f64) {
        let f = self.encoder.flops(len);
        (f, f)
    }
}
