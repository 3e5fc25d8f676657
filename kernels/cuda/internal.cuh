/* internal.cuh — internals shared by the CUDA backend's .cu files (not part of the seam):
 * the backend state, the error macros, the per-call staging of host parameter arrays, the
 * device scratch, weight loads in any weight dtype, and the op entry points each family
 * file defines.
 *
 * Error policy (docs/serving.md, "Device faults and failed generations"): CUDA_CHECK /
 * CUBLAS_CHECK name the statement, file:line and the op in a device fault (kernels/fault.h:
 * the process's fault handler, else abort); CUDA_LAUNCHED(op) checks cudaGetLastError
 * after every kernel launch. Ops cannot fail on valid arguments, so any error there is a bug
 * or a sticky device fault, and the process must restart.
 */
#ifndef DALLE_KERNELS_CUDA_INTERNAL_CUH
#define DALLE_KERNELS_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "common/error.h" /* a C header without extern "C" */
}
#include "kernels/cuda/cuda.h"

#define DALLE_CUDA_BLAS_WS ((size_t)32 << 20) /* cuBLAS workspace bytes */

typedef struct {
    dalle_backend_ops ops; /* a copy of the table, with this instance's weight_dtype */
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *stage; /* device staging for host parameter arrays, grow-only */
    size_t stage_bytes;
    void *host_stage; /* host packing buffer for the same */
    size_t host_stage_bytes;
    void *scratch[3]; /* device scratch: [0] im2col / sampler, [1] 16-bit GEMM operand,
                       * [2] decode_attention partials */
    size_t scratch_bytes[3];
    int sms;       /* streaming multiprocessors of the device */
    void *blas_ws; /* cuBLAS workspace (set explicitly so that recording allocates nothing) */
    /* Recording (graph_* in backend.cu): while `capturing`, ops are recorded on the stream;
     * an op that would allocate or copy from the host sets `capture_failed` instead.
     * `generation` counts reallocations of scratch 1 and 2 (the ones recordable ops use):
     * a recorded step holds their addresses, so a handle of an older generation is stale. */
    int capturing, capture_failed;
    unsigned generation;
} dalle_cuda;

static inline dalle_cuda *dalle_cuda_of(dalle_backend *be) {
    return (dalle_cuda *)be->impl;
}

void dalle_cuda_fail(const char *what, const char *detail, const char *op, const char *file,
                     int line);

#define CUDA_CHECK(stmt, op)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (stmt);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            dalle_cuda_fail(#stmt, cudaGetErrorString(e_), op, __FILE__, __LINE__);                \
    } while (0)

#define CUBLAS_CHECK(stmt, op)                                                                     \
    do {                                                                                           \
        cublasStatus_t s_ = (stmt);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            dalle_cuda_fail(#stmt, cublasGetStatusString(s_), op, __FILE__, __LINE__);             \
    } while (0)

/* A kernel launch, kernel<<<grid, block, smem, stream>>>(args…), and a kernel's dynamic
 * shared memory, extern __shared__ T name[]: written through these so that the same source
 * also runs on the emulated device (g++ with DALLE_CUDA_EMU, docs/gpu-emulator.md). */
#ifdef DALLE_CUDA_EMU
#define DALLE_LAUNCH(kernel, grid, block, smem, stream)                                            \
    dalle_emu::launch(#kernel, kernel, grid, block, smem, stream)
#define DALLE_SHARED_DYN(T, name) T *name = (T *)dalle_emu::dyn_smem()
#else
#define DALLE_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define DALLE_SHARED_DYN(T, name)                       extern __shared__ T name[]
#endif

/* After each kernel launch: a bad launch configuration or an earlier sticky fault. */
#define CUDA_LAUNCHED(op) CUDA_CHECK(cudaGetLastError(), op)

/* Blocks of `threads` covering n items (n ≥ 1), capped for grid-stride loops. */
static inline unsigned dalle_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    if (b > 65535LL * 32)
        b = 65535LL * 32;
    return (unsigned)b;
}

/* Host parameter arrays → device: pack parts (host pointer, bytes) 256-byte aligned into
 * one host buffer, copy once on the stream, return the device address of each part in
 * dev[]. Pageable cudaMemcpyAsync consumes the source before it returns, and the staging
 * area is reused only by later ops on the same stream, so no synchronisation is needed.
 * (CUDA graphs will need a pinned, per-step staging area instead.) */
void dalle_cuda_stage(dalle_backend *be, int n, const void *const *src, const size_t *bytes,
                      void **dev, const char *op);

/* Device scratch buffer `which` (0, 1 or 2) of at least bytes, valid until the next op
 * that asks for the same buffer with more bytes (then it moves: generation + 1). */
void *dalle_cuda_scratch(dalle_backend *be, int which, size_t bytes, const char *op);

/* y[M,N] (ld N) = alpha·x[M,K] (ld K) · W[:N,:K]ᵀ + beta·y for a weight in any weight
 * dtype; 16-bit weights round x into scratch 1 first. */
void dalle_cuda_gemm_xwt(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                         int N, int K, float beta, const char *op);

/* Weight element i as float, whatever the weight dtype. */
__device__ __forceinline__ float dalle_ldw(const void *p, int dtype, size_t i) {
    if (dtype == DALLE_F32)
        return ((const float *)p)[i];
    if (dtype == DALLE_F16)
        return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

/* Warp and block reductions (blockDim.x a multiple of 32, ≤ 1024). */
template <typename T> __device__ __forceinline__ T dalle_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T> __device__ T dalle_block_sum(T v, T *shm /* [32] */) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = dalle_warp_sum(v);
    __syncthreads(); /* shm may still be read from a previous call */
    if (lane == 0)
        shm[warp] = v;
    __syncthreads();
    T t = lane < nw ? shm[lane] : (T)0;
    if (warp == 0)
        t = dalle_warp_sum(t);
    if (threadIdx.x == 0)
        shm[0] = t;
    __syncthreads();
    return shm[0];
}

__device__ __forceinline__ float dalle_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ inline float dalle_block_max(float v, float *shm /* [32] */) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = dalle_warp_max(v);
    __syncthreads(); /* shm may still be read from a previous call */
    if (lane == 0)
        shm[warp] = v;
    __syncthreads();
    float t = lane < nw ? shm[lane] : -INFINITY;
    if (warp == 0)
        t = dalle_warp_max(t);
    if (threadIdx.x == 0)
        shm[0] = t;
    __syncthreads();
    return shm[0];
}

/* GroupNorm (norm.cu's group_norm, conv_igemm.cu's fused conv2d_gn): the statistics of one
 * (image, group) by a whole block — two passes in double over the n = HW·cg values
 * xb[(i / cg)·C + i % cg] (mean, then the biased variance of the centred values) — as the
 * mean split into two floats (hi + lo) and rstd; and the normalisation of one value with
 * them, the CPU's formula (kernels/cpu/norm.c) operation for operation. */
struct dalle_gn_stat {
    float hi, lo, rstd;
};

__device__ inline dalle_gn_stat dalle_gn_stats(const float *xb, int64_t n, int cg, int C, float eps,
                                               double *shm /* [32] */) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += xb[(i / cg) * C + i % cg];
    const double mean = dalle_block_sum(s, shm) / (double)n;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = xb[(i / cg) * C + i % cg] - mean;
        ss += d * d;
    }
    const double var = dalle_block_sum(ss, shm) / (double)n;
    const float hi = (float)mean;
    return {hi, (float)(mean - hi), (float)(1.0 / sqrt(var + eps))};
}

__device__ __forceinline__ float dalle_gn_apply(float v, dalle_gn_stat st, float gamma, float beta,
                                                int swish) {
    const float scale = __fmul_rn(st.rstd, gamma);
    float t = __fadd_rn(__fmul_rn(__fsub_rn(__fsub_rn(v, st.hi), st.lo), scale), beta);
    if (swish)
        t = t / (1.0f + expf(-t));
    return t;
}
/* The unnormalised softmax of s[0..n) by a whole block, in place: s_j ← e^(s_j − max)
 * (0 for −∞); returns Σ_j s_j and the max in *max_out. Ends with a barrier, so all of s is
 * written when it returns. red: shared [32]. */
__device__ inline float dalle_block_exp(float *s, int n, float *red, float *max_out) {
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        mx = fmaxf(mx, s[j]);
    mx = dalle_block_max(mx, red);
    float z = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float p = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
        s[j] = p;
        z += p;
    }
    *max_out = mx;
    return dalle_block_sum(z, red);
}

/* One query of one head, by a whole block (attention.cu's and decode.cu's cross-attention
 * kernels): the scores q·k_j·scale of the n keys, −∞ where mask (may be NULL) hides key j,
 * into s; softmax with the maximum subtracted; out[d] = Σ_j p_j·v[j·C + d] / Σ_j p_j over
 * d < D, zeros when no key is visible. q: [D]; k, v: rows of stride C (already at the head);
 * s: shared [n]; red: shared [32]. Warps take keys in turn and reduce over the head
 * dimension with shuffles; each thread then owns output channels d and sums the keys in
 * order. */
__device__ inline void dalle_attend_query(float *out, const float *q, const float *k,
                                          const float *v, const uint8_t *mask, int n, int C, int D,
                                          float scale, float *s, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int j = warp; j < n; j += nw) {
        const bool visible = !mask || mask[j];
        float dot = 0;
        if (visible)
            for (int d = lane; d < D; d += 32)
                dot += q[d] * k[(size_t)j * C + d];
        dot = dalle_warp_sum(dot);
        if (lane == 0)
            s[j] = visible ? dot * scale : -INFINITY;
    }
    __syncthreads();
    float mx;
    const float z = dalle_block_exp(s, n, red, &mx);
    const float inv = z > 0 ? 1.0f / z : 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0;
        for (int j = 0; j < n; j++)
            if (s[j] != 0.0f)
                acc += s[j] * v[(size_t)j * C + d];
        out[d] = acc * inv;
    }
}

extern "C" {
void dalle_cuda_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                       int N, int K, int accumulate);
void dalle_cuda_layernorm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                          const dalle_tensor *beta, int rows, int C, float eps);
void dalle_cuda_group_norm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                           const dalle_tensor *beta, int B, int HW, int C, int groups, float eps,
                           int swish);
void dalle_cuda_embed(dalle_backend *be, float *y, const dalle_tensor *table, const int32_t *ids,
                      const dalle_tensor *pos_table, const int32_t *pos, int rows, int C);
void dalle_cuda_embed_dev(dalle_backend *be, float *y, const dalle_tensor *table,
                          const int32_t *ids, const dalle_tensor *pos_table, const int32_t *pos,
                          int rows, int C);
void dalle_cuda_decode_attention(dalle_backend *be, float *out, const float *q, const float *k,
                                 const float *v, void *kc, void *vc, const int32_t *slot,
                                 const int32_t *pos, int B, int cap, int H, int D);
void dalle_cuda_cross_attention(dalle_backend *be, float *out, const float *q, const float *k,
                                const float *v, const int32_t *block, const uint8_t *key_mask,
                                int B, int T, int H, int D);
void dalle_cuda_attention(dalle_backend *be, float *out, const float *q, const float *k,
                          const float *v, const int32_t *kv_index, const uint8_t *key_mask,
                          const int32_t *causal_pos, int B, int Tq, int Tk, int kv_cap, int H,
                          int D);
void dalle_cuda_gelu_mul(dalle_backend *be, float *y, const float *a, const float *b, int64_t n);
void dalle_cuda_add(dalle_backend *be, float *y, const float *x, int64_t n);
void dalle_cuda_bias_add(dalle_backend *be, float *y, const dalle_tensor *bias, int rows, int N);
void dalle_cuda_quick_gelu(dalle_backend *be, float *y, const float *x, int64_t n);
void dalle_cuda_patchify(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C,
                         int p);
void dalle_cuda_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C);
void dalle_cuda_conv2d(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                       const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k);
void dalle_cuda_conv_igemm(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                           const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k,
                           int up, const dalle_tensor *gn_gamma, const dalle_tensor *gn_beta,
                           int groups, float eps, int swish, const char *op);
void dalle_cuda_conv2d_gn(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                          const dalle_tensor *beta, int groups, float eps, int swish,
                          const dalle_tensor *w, const dalle_tensor *bias, int B, int H, int W,
                          int Cin, int Cout, int k);
void dalle_cuda_conv2d_up2x(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                            const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout,
                            int k);
void dalle_cuda_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                        int32_t *nonfinite);
void dalle_cuda_clip_prep(dalle_backend *be, float *pixels, const uint8_t *rgb,
                          const dalle_clip_prep_plan *plan, int B);
void dalle_cuda_sample(dalle_backend *be, int32_t *tokens, const float *logits, int B, int V,
                       int ld, const dalle_sample_params *params, const int32_t *step);
void dalle_cuda_sample_dev(dalle_backend *be, int32_t *rows, int32_t *codes, const int32_t *code_at,
                           const float *logits, int B, int V, int ld,
                           const dalle_sample_params *params, const int32_t *step);
}

#endif /* DALLE_KERNELS_CUDA_INTERNAL_CUH */
