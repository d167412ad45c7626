// crossrank's CUDA kernels, compiled at start-up by NVRTC for the device found.
//
// No headers: half conversions are PTX `cvt` instructions, so NVRTC needs no include path.
// Activations are fp32 everywhere (norms, softmax and accumulation in fp32); only the GEMM
// operands are rounded to f16 / bf16 when --dtype asks for it. Tokens are packed: sequence s
// owns rows offsets[s] .. offsets[s + 1] of every [tokens x width] matrix, and no kernel ever
// touches padding.

typedef unsigned short u16;
typedef unsigned int u32;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the total.
__device__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = lane < warps ? red[lane] : 0.0f;
    return warp_sum(t);
}

// In-place LayerNorm of one row of h floats (two passes: mean, then centred variance).
__device__ void layer_norm_row(float* row, const float* gamma, const float* beta, int h,
                               float eps, float* red) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < h; j += blockDim.x) s += row[j];
    const float mean = block_sum(s, red) / h;
    float v = 0.0f;
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
        const float d = row[j] - mean;
        v += d * d;
    }
    const float inv = 1.0f / sqrtf(block_sum(v, red) / h + eps);
    for (int j = threadIdx.x; j < h; j += blockDim.x)
        row[j] = (row[j] - mean) * inv * gamma[j] + beta[j];
}

// One block per token: word + position + token-type embedding, then LayerNorm.
extern "C" __global__ void embed_layer_norm(const u32* ids, const u32* types, const u32* pos,
                                            const float* word, const float* position,
                                            const float* token_type, const float* gamma,
                                            const float* beta, float* out, int h, float eps) {
    __shared__ float red[32];
    const long r = blockIdx.x;
    float* row = out + r * h;
    const float* w = word + (long)ids[r] * h;
    const float* p = position + (long)pos[r] * h;
    const float* t = token_type + (long)types[r] * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] = w[j] + p[j] + t[j];
    layer_norm_row(row, gamma, beta, h, eps, red);
}

// x[i] = act(x[i] + bias[i % cols]); act 0: none, 1: GELU (erf), 2: GELU (tanh), 3: ReLU.
extern "C" __global__ void bias_act(float* x, const float* bias, long n, int cols, int act) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x) {
        float v = x[i] + bias[i % cols];
        if (act == 1) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (act == 2) v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else if (act == 3) v = fmaxf(v, 0.0f);
        x[i] = v;
    }
}

// One block per row: x = LayerNorm(y + bias + x) (a linear layer's output, its bias and the
// residual stream).
extern "C" __global__ void bias_residual_layer_norm(const float* y, const float* bias, float* x,
                                                    const float* gamma, const float* beta, int h,
                                                    float eps) {
    __shared__ float red[32];
    const long r = blockIdx.x;
    float* row = x + r * h;
    const float* yr = y + r * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] += yr[j] + bias[j];
    layer_norm_row(row, gamma, beta, h, eps, red);
}

// Variable-length attention over packed tokens, no mask and no padding. qkv is
// [tokens x 3h] (Q | K | V, head-major inside each), ctx is [tokens x h]. Grid: (sequences,
// heads, query tiles); one warp per query row; dynamic shared memory holds one row of scores
// per warp (max_len floats each).
extern "C" __global__ void attention(const float* qkv, const int* offsets, float* ctx, int heads,
                                     int d, float scale, int max_len) {
    extern __shared__ float smem[];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int s = blockIdx.x, head = blockIdx.y;
    const int start = offsets[s], len = offsets[s + 1] - start;
    const int i = blockIdx.z * warps + warp;
    if (i >= len) return;
    const int h = heads * d;
    const long stride = 3L * h;
    const float* q = qkv + (start + i) * stride + head * d;
    const float* k0 = qkv + start * stride + h + head * d;
    const float* v0 = qkv + start * stride + 2 * h + head * d;
    float* sc = smem + warp * max_len;
    float m = __int_as_float(0xff800000);  // -inf
    for (int j = lane; j < len; j += 32) {
        const float* k = k0 + j * stride;
        float dot = 0.0f;
        for (int c = 0; c < d; ++c) dot += q[c] * k[c];
        dot *= scale;
        sc[j] = dot;
        m = fmaxf(m, dot);
    }
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
        const float e = expf(sc[j] - m);
        sc[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    __syncwarp();
    float* out = ctx + (long)(start + i) * h + head * d;
    for (int c = lane; c < d; c += 32) {
        float acc = 0.0f;
        for (int j = 0; j < len; ++j) acc += sc[j] * v0[j * stride + c];
        out[c] = acc * inv;
    }
}

// out[s] = x[offsets[s]]: each sequence's first token, [sequences x h].
extern "C" __global__ void first_rows(const float* x, const int* offsets, float* out, int h) {
    const int s = blockIdx.x;
    const float* src = x + (long)offsets[s] * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) out[(long)s * h + j] = src[j];
}

// GEMM operands for --dtype f16 / bf16: round-to-nearest-even from fp32 (bf16 when `bf16`).
extern "C" __global__ void to_half(const float* x, u16* y, long n, int bf16) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x) {
        u16 r;
        if (bf16) asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x[i]));
        else asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x[i]));
        y[i] = r;
    }
}
