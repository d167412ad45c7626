//! The BERT-style encoder on the GPU: weights uploaded once, activations in an arena reused
//! (and grown) from batch to batch, every step on one stream.

use super::{device_error, Kernels};
use crate::config::Activation;
use crate::device::Dtype;
use crate::error::{EngineError, Result};
use crate::models::encoder::PackedBatch;
use crate::models::tensors::{EncoderTensors, LayerTensors};
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchArgs, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use std::ffi::c_void;
use std::sync::Arc;

/// A device address, as the kernels take it.
type DevPtr = u64;

/// A device buffer and its address.
struct Buf<T> {
    slice: CudaSlice<T>,
    ptr: DevPtr,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    fn wrap(stream: &Arc<CudaStream>, slice: CudaSlice<T>) -> Buf<T> {
        let ptr = {
            let (p, _sync) = slice.device_ptr(stream);
            p
        };
        Buf { slice, ptr }
    }

    fn upload(stream: &Arc<CudaStream>, host: &[T]) -> Result<Buf<T>> {
        let slice = stream
            .clone_htod(host)
            .map_err(|e| device_error("uploading weights", e))?;
        Ok(Buf::wrap(stream, slice))
    }

    fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Buf<T>> {
        let slice = stream
            .alloc_zeros(len.max(1))
            .map_err(|e| device_error(&format!("allocating {len} elements"), e))?;
        Ok(Buf::wrap(stream, slice))
    }

    fn bytes(&self) -> usize {
        self.slice.num_bytes()
    }
}

/// A linear layer's weight in the GEMM operand type.
enum Weight {
    F32(Buf<f32>),
    /// f16 or bf16 bits.
    Half(Buf<u16>),
}

struct DevLinear {
    w: Weight,
    bias: Buf<f32>,
    /// Output features.
    n: usize,
    /// Input features.
    k: usize,
}

impl DevLinear {
    fn upload(
        stream: &Arc<CudaStream>,
        w: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        dtype: Dtype,
    ) -> Result<DevLinear> {
        let w = match dtype {
            Dtype::F32 => Weight::F32(Buf::upload(stream, w)?),
            Dtype::F16 | Dtype::Bf16 => {
                let bits: fn(f32) -> u16 = if dtype == Dtype::Bf16 {
                    |x| half::bf16::from_f32(x).to_bits()
                } else {
                    |x| half::f16::from_f32(x).to_bits()
                };
                Weight::Half(Buf::upload(
                    stream,
                    &w.iter().map(|&x| bits(x)).collect::<Vec<_>>(),
                )?)
            }
        };
        Ok(DevLinear {
            w,
            bias: Buf::upload(stream, b)?,
            n,
            k,
        })
    }

    fn bytes(&self) -> usize {
        self.bias.bytes()
            + match &self.w {
                Weight::F32(b) => b.bytes(),
                Weight::Half(b) => b.bytes(),
            }
    }
}

struct Norm {
    gamma: Buf<f32>,
    beta: Buf<f32>,
}

impl Norm {
    fn upload(stream: &Arc<CudaStream>, (g, b): &(Vec<f32>, Vec<f32>)) -> Result<Norm> {
        Ok(Norm {
            gamma: Buf::upload(stream, g)?,
            beta: Buf::upload(stream, b)?,
        })
    }

    fn bytes(&self) -> usize {
        self.gamma.bytes() + self.beta.bytes()
    }
}

struct DevLayer {
    qkv: DevLinear,
    attn_out: DevLinear,
    ln1: Norm,
    ffn_in: DevLinear,
    ffn_out: DevLinear,
    ln2: Norm,
}

/// The encoder's weights on the device.
pub(crate) struct DeviceEncoder {
    blas: CudaBlas,
    dtype: Dtype,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: i32,
    word: Buf<f32>,
    position: Buf<f32>,
    token_type: Buf<f32>,
    emb_ln: Norm,
    layers: Vec<DevLayer>,
}

/// Activation buffers, grown to the largest batch seen.
#[derive(Default)]
pub(crate) struct Arena {
    tokens: usize,
    sequences: usize,
    bufs: Option<ArenaBufs>,
}

struct ArenaBufs {
    x: Buf<f32>,
    qkv: Buf<f32>,
    ctx: Buf<f32>,
    y: Buf<f32>,
    inter: Buf<f32>,
    half: Buf<u16>,
    ids: Buf<u32>,
    types: Buf<u32>,
    positions: Buf<u32>,
    offsets: Buf<i32>,
    first: Buf<f32>,
}

impl Arena {
    /// Device memory held, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| {
            b.x.bytes()
                + b.qkv.bytes()
                + b.ctx.bytes()
                + b.y.bytes()
                + b.inter.bytes()
                + b.half.bytes()
                + b.ids.bytes()
                + b.types.bytes()
                + b.positions.bytes()
                + b.offsets.bytes()
                + b.first.bytes()
        })
    }

    fn reserve(
        &mut self,
        stream: &Arc<CudaStream>,
        t: usize,
        s: usize,
        h: usize,
        i: usize,
    ) -> Result<&mut ArenaBufs> {
        if self.bufs.is_none() || t > self.tokens || s > self.sequences {
            let t = t.max(self.tokens).next_multiple_of(256);
            let s = s.max(self.sequences).next_multiple_of(64);
            self.bufs = None; // free the old buffers before allocating larger ones
            self.bufs = Some(ArenaBufs {
                x: Buf::zeros(stream, t * h)?,
                qkv: Buf::zeros(stream, t * 3 * h)?,
                ctx: Buf::zeros(stream, t * h)?,
                y: Buf::zeros(stream, t * h)?,
                inter: Buf::zeros(stream, t * i)?,
                half: Buf::zeros(stream, t * i.max(3 * h))?,
                ids: Buf::zeros(stream, t)?,
                types: Buf::zeros(stream, t)?,
                positions: Buf::zeros(stream, t)?,
                offsets: Buf::zeros(stream, s + 1)?,
                first: Buf::zeros(stream, s * h)?,
            });
            self.tokens = t;
            self.sequences = s;
        }
        self.bufs
            .as_mut()
            .ok_or_else(|| EngineError::Device("arena not allocated".into()))
    }
}

fn rows_cfg(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn elementwise_cfg(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 8192) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Shared memory one attention block may use without opting in.
const ATTENTION_SMEM: usize = 48 * 1024;

/// Launches the kernel `l` was built for.
///
/// # Safety
/// The arguments pushed on `l` must match the kernel's signature, and every buffer they point
/// to must be as large as the kernel reads and writes for `cfg`'s grid.
unsafe fn launch(what: &str, l: &mut LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    // SAFETY: the caller's contract.
    let r = unsafe { l.launch(cfg) };
    r.map(|_| ()).map_err(|e| device_error(what, e))
}

fn launched(what: &str, r: std::result::Result<(), cudarc::driver::DriverError>) -> Result<()> {
    r.map(|_| ()).map_err(|e| device_error(what, e))
}

impl DeviceEncoder {
    /// Uploads `t`'s weights, in `dtype` for the GEMM operands and fp32 for the rest.
    pub(crate) fn upload(
        stream: &Arc<CudaStream>,
        t: EncoderTensors,
        dtype: Dtype,
    ) -> Result<DeviceEncoder> {
        let (h, i) = (t.hidden, t.inter);
        let layer = |l: &LayerTensors| -> Result<DevLayer> {
            Ok(DevLayer {
                qkv: DevLinear::upload(stream, &l.qkv_w, &l.qkv_b, 3 * h, h, dtype)?,
                attn_out: DevLinear::upload(stream, &l.attn_out.0, &l.attn_out.1, h, h, dtype)?,
                ln1: Norm::upload(stream, &l.ln1)?,
                ffn_in: DevLinear::upload(stream, &l.ffn_in.0, &l.ffn_in.1, i, h, dtype)?,
                ffn_out: DevLinear::upload(stream, &l.ffn_out.0, &l.ffn_out.1, h, i, dtype)?,
                ln2: Norm::upload(stream, &l.ln2)?,
            })
        };
        let layers = t.layers.iter().map(layer).collect::<Result<Vec<_>>>()?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| device_error("creating a cuBLAS handle", e))?;
        Ok(DeviceEncoder {
            blas,
            dtype,
            hidden: h,
            heads: t.heads,
            inter: i,
            eps: t.eps,
            act: match t.activation {
                Activation::Gelu => 1,
                Activation::GeluTanh => 2,
                Activation::Relu => 3,
            },
            word: Buf::upload(stream, &t.word)?,
            position: Buf::upload(stream, &t.position)?,
            token_type: Buf::upload(stream, &t.token_type)?,
            emb_ln: Norm::upload(stream, &t.emb_ln)?,
            layers,
        })
    }

    /// Device memory the weights take, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.word.bytes()
            + self.position.bytes()
            + self.token_type.bytes()
            + self.emb_ln.bytes()
            + self
                .layers
                .iter()
                .map(|l| {
                    l.qkv.bytes()
                        + l.attn_out.bytes()
                        + l.ln1.bytes()
                        + l.ffn_in.bytes()
                        + l.ffn_out.bytes()
                        + l.ln2.bytes()
                })
                .sum::<usize>()
    }

    /// Nominal FLOPs of a sequence of `len` tokens.
    pub(crate) fn flops(&self, len: usize) -> f64 {
        crate::models::tensors::encoder_flops(self.hidden, self.inter, self.layers.len(), len)
    }

    /// Runs the encoder on `batch`; returns each sequence's final first-token state
    /// (`[sequences x hidden]`, host memory).
    pub(crate) fn forward_first_rows(
        &self,
        stream: &Arc<CudaStream>,
        k: &Kernels,
        arena: &mut Arena,
        batch: &PackedBatch,
    ) -> Result<Vec<f32>> {
        let (t, s, h, i) = (batch.tokens(), batch.sequences(), self.hidden, self.inter);
        let max_len = (0..s)
            .map(|j| batch.offsets[j + 1] - batch.offsets[j])
            .max()
            .unwrap_or(0);
        if max_len * 4 > ATTENTION_SMEM {
            return Err(EngineError::InvalidOption(format!(
                "a sequence of {max_len} tokens is longer than the CUDA attention kernel takes ({})",
                ATTENTION_SMEM / 4
            )));
        }
        let b = arena.reserve(stream, t, s, h, i)?;
        let copy = |what: &str, r| launched(what, r);
        copy(
            "copying ids",
            stream.memcpy_htod(&batch.ids[..], &mut b.ids.slice),
        )?;
        copy(
            "copying token types",
            stream.memcpy_htod(&batch.type_ids[..], &mut b.types.slice),
        )?;
        copy(
            "copying positions",
            stream.memcpy_htod(&batch.positions[..], &mut b.positions.slice),
        )?;
        let offsets: Vec<i32> = batch.offsets.iter().map(|&o| o as i32).collect();
        copy(
            "copying offsets",
            stream.memcpy_htod(&offsets[..], &mut b.offsets.slice),
        )?;

        let (hi, eps) = (h as i32, self.eps);
        let mut l = stream.launch_builder(&k.embed);
        l.arg(&b.ids.ptr)
            .arg(&b.types.ptr)
            .arg(&b.positions.ptr)
            .arg(&self.word.ptr)
            .arg(&self.position.ptr)
            .arg(&self.token_type.ptr)
            .arg(&self.emb_ln.gamma.ptr)
            .arg(&self.emb_ln.beta.ptr)
            .arg(&b.x.ptr)
            .arg(&hi)
            .arg(&eps);
        // SAFETY: the argument list matches embed_layer_norm's signature; every buffer holds at
        // least t rows of h floats (the arena is reserved for t tokens), and ids, positions and
        // types are within the tables (`CrossEncoder::predict_encoded` checks ids and lengths,
        // `push_sequence` keeps token types in range), as the CPU backend relies on too.
        unsafe { launch("embed_layer_norm", &mut l, rows_cfg(t, 256)) }?;

        for layer in &self.layers {
            self.linear(stream, k, b.half.ptr, b.x.ptr, t, &layer.qkv, b.qkv.ptr)?;
            self.bias_act(stream, &k.bias_act, b.qkv.ptr, &layer.qkv, t, 0)?;
            self.attention(stream, &k.attention, b, s, max_len)?;
            self.linear(
                stream,
                k,
                b.half.ptr,
                b.ctx.ptr,
                t,
                &layer.attn_out,
                b.y.ptr,
            )?;
            self.residual_norm(
                stream,
                &k.bias_residual_ln,
                b,
                t,
                &layer.attn_out,
                &layer.ln1,
            )?;
            self.linear(
                stream,
                k,
                b.half.ptr,
                b.x.ptr,
                t,
                &layer.ffn_in,
                b.inter.ptr,
            )?;
            self.bias_act(stream, &k.bias_act, b.inter.ptr, &layer.ffn_in, t, self.act)?;
            self.linear(
                stream,
                k,
                b.half.ptr,
                b.inter.ptr,
                t,
                &layer.ffn_out,
                b.y.ptr,
            )?;
            self.residual_norm(
                stream,
                &k.bias_residual_ln,
                b,
                t,
                &layer.ffn_out,
                &layer.ln2,
            )?;
        }

        let mut l = stream.launch_builder(&k.first_rows);
        l.arg(&b.x.ptr)
            .arg(&b.offsets.ptr)
            .arg(&b.first.ptr)
            .arg(&hi);
        // SAFETY: first_rows(x, offsets, out, h): s + 1 offsets into x's t rows, s rows out.
        unsafe { launch("first_rows", &mut l, rows_cfg(s, 128)) }?;
        let mut first = vec![0.0f32; s * h];
        let view = b.first.slice.slice(..s * h);
        launched("copying results", stream.memcpy_dtoh(&view, &mut first[..]))?;
        launched("synchronising", stream.synchronize())?;
        Ok(first)
    }

    /// `y[t x n] = x[t x k] W^T` (bias added by the next kernel).
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        stream: &Arc<CudaStream>,
        k: &Kernels,
        half: DevPtr,
        x: DevPtr,
        t: usize,
        lin: &DevLinear,
        y: DevPtr,
    ) -> Result<()> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        // Row-major y = x W^T is column-major y^T = W x^T: W (k x n column-major) transposed.
        let (m, n, kk) = (lin.n as i32, t as i32, lin.k as i32);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let handle = *self.blas.handle();
        match &lin.w {
            Weight::F32(w) => {
                // SAFETY: w is n x k, x is t x k and y is t x n floats on this device.
                unsafe {
                    blas::sgemm(
                        handle,
                        CUBLAS_OP_T,
                        CUBLAS_OP_N,
                        m,
                        n,
                        kk,
                        &alpha,
                        w.ptr as *const f32,
                        kk,
                        x as *const f32,
                        kk,
                        &beta,
                        y as *mut f32,
                        m,
                    )
                }
                .map_err(|e| device_error("cuBLAS sgemm", e))
            }
            Weight::Half(w) => {
                let (is_bf16, dt) = match self.dtype {
                    Dtype::Bf16 => (1i32, blas_sys::cudaDataType_t::CUDA_R_16BF),
                    _ => (0i32, blas_sys::cudaDataType_t::CUDA_R_16F),
                };
                let count = (t * lin.k) as i64;
                let mut l = stream.launch_builder(&k.to_half);
                l.arg(&x).arg(&half).arg(&count).arg(&is_bf16);
                // SAFETY: to_half(x, y, n, bf16): x holds n floats, the half buffer at least
                // t * max(i, 3h) >= n elements.
                unsafe { launch("to_half", &mut l, elementwise_cfg(t * lin.k)) }?;
                // SAFETY: w is n x k and the converted x is t x k half values; y is t x n fp32.
                unsafe {
                    blas::gemm_ex(
                        handle,
                        CUBLAS_OP_T,
                        CUBLAS_OP_N,
                        m,
                        n,
                        kk,
                        (&alpha) as *const f32 as *const c_void,
                        w.ptr as *const c_void,
                        dt,
                        kk,
                        half as *const c_void,
                        dt,
                        kk,
                        (&beta) as *const f32 as *const c_void,
                        y as *mut c_void,
                        blas_sys::cudaDataType_t::CUDA_R_32F,
                        m,
                        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
                .map_err(|e| device_error("cuBLAS gemm_ex", e))
            }
        }
    }

    fn bias_act(
        &self,
        stream: &Arc<CudaStream>,
        f: &CudaFunction,
        x: DevPtr,
        lin: &DevLinear,
        t: usize,
        act: i32,
    ) -> Result<()> {
        let n = (t * lin.n) as i64;
        let cols = lin.n as i32;
        let mut l = stream.launch_builder(f);
        l.arg(&x).arg(&lin.bias.ptr).arg(&n).arg(&cols).arg(&act);
        // SAFETY: bias_act(x, bias, n, cols, act): x holds t rows of lin.n floats, the bias
        // lin.n floats.
        unsafe { launch("bias_act", &mut l, elementwise_cfg(t * lin.n)) }
    }

    fn residual_norm(
        &self,
        stream: &Arc<CudaStream>,
        f: &CudaFunction,
        b: &ArenaBufs,
        t: usize,
        lin: &DevLinear,
        norm: &Norm,
    ) -> Result<()> {
        let hi = self.hidden as i32;
        let mut l = stream.launch_builder(f);
        l.arg(&b.y.ptr)
            .arg(&lin.bias.ptr)
            .arg(&b.x.ptr)
            .arg(&norm.gamma.ptr)
            .arg(&norm.beta.ptr)
            .arg(&hi)
            .arg(&self.eps);
        // SAFETY: bias_residual_layer_norm(y, bias, x, gamma, beta, h, eps): y and x hold t
        // rows of h floats; bias, gamma and beta h floats each.
        unsafe { launch("bias_residual_layer_norm", &mut l, rows_cfg(t, 256)) }
    }

    fn attention(
        &self,
        stream: &Arc<CudaStream>,
        f: &CudaFunction,
        b: &ArenaBufs,
        s: usize,
        max_len: usize,
    ) -> Result<()> {
        let d = self.hidden / self.heads;
        let warps = (ATTENTION_SMEM / (max_len.max(1) * 4)).clamp(1, 4);
        let cfg = LaunchConfig {
            grid_dim: (s as u32, self.heads as u32, max_len.div_ceil(warps) as u32),
            block_dim: (32 * warps as u32, 1, 1),
            shared_mem_bytes: (warps * max_len * 4) as u32,
        };
        let (heads, di, ml) = (self.heads as i32, d as i32, max_len as i32);
        let scale = 1.0f32 / (d as f32).sqrt();
        let mut l = stream.launch_builder(f);
        l.arg(&b.qkv.ptr)
            .arg(&b.offsets.ptr)
            .arg(&b.ctx.ptr)
            .arg(&heads)
            .arg(&di)
            .arg(&scale)
            .arg(&ml);
        // SAFETY: attention(qkv, offsets, ctx, heads, d, scale, max_len): qkv is t x 3h, ctx
        // t x h, offsets s + 1 ints with no sequence longer than max_len, and the dynamic
        // shared memory is warps * max_len floats (under the 48 KiB default).
        unsafe { launch("attention", &mut l, cfg) }
    }
}
