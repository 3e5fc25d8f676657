/* elementwise.cu — gathers and element-wise ops: embedding (+ position) gather, patchify,
 * nearest ×2 upsample, GELU-GLU middle (exact erf GELU written as 0.5·a·erfc(−a/√2)·b like
 * the CPU), CLIP's quick GELU, bias broadcast, residual add. Grid-stride loops, one element
 * per thread step; host index arrays go through the staging area.
 */
#include "kernels/cuda/internal.cuh"

#define EW_THREADS 256
#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void embed_kernel(float *y, const void *E, const void *P, int dt, const int32_t *ids,
                             const int32_t *pos, int rows, int C) {
    GRID_STRIDE(i, (int64_t)rows * C) {
        const int64_t r = i / C, c = i % C;
        float v = dalle_ldw(E, dt, (size_t)ids[r] * C + c);
        if (P)
            v = __fadd_rn(v, dalle_ldw(P, dt, (size_t)pos[r] * C + c));
        y[i] = v;
    }
}

extern "C" void dalle_cuda_embed(dalle_backend *be, float *y, const dalle_tensor *table,
                                 const int32_t *ids, const dalle_tensor *pos_table,
                                 const int32_t *pos, int rows, int C) {
    DALLE_ASSERT(table->ndim == 2 && table->shape[1] == C);
    DALLE_ASSERT(!pos_table || (pos_table->ndim == 2 && pos_table->shape[1] == C));
    DALLE_ASSERT(rows >= 0 && C >= 1);
    for (int r = 0; r < rows; r++) {
        DALLE_ASSERT(ids[r] >= 0 && ids[r] < table->shape[0]);
        DALLE_ASSERT(!pos_table || (pos[r] >= 0 && pos[r] < pos_table->shape[0]));
    }
    if (rows == 0)
        return;
    const void *src[2] = {ids, pos_table ? pos : NULL};
    const size_t bytes[2] = {(size_t)rows * 4, pos_table ? (size_t)rows * 4 : 0};
    void *dev[2];
    dalle_cuda_stage(be, 2, src, bytes, dev, "embed");
    const int64_t n = (int64_t)rows * C;
    DALLE_LAUNCH(embed_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, table->data, pos_table ? pos_table->data : NULL, dalle_cuda_of(be)->ops.weight_dtype,
     (const int32_t *)dev[0], (const int32_t *)dev[1], rows, C);
    CUDA_LAUNCHED("embed");
}

/* embed with ids and pos already in device memory (ops.h embed_dev): no host checks, no
 * staging, so it can be recorded; ids and pos are trusted like every device index. */
extern "C" void dalle_cuda_embed_dev(dalle_backend *be, float *y, const dalle_tensor *table,
                                     const int32_t *ids, const dalle_tensor *pos_table,
                                     const int32_t *pos, int rows, int C) {
    DALLE_ASSERT(table->ndim == 2 && table->shape[1] == C);
    DALLE_ASSERT(!pos_table || (pos_table->ndim == 2 && pos_table->shape[1] == C));
    DALLE_ASSERT(rows >= 0 && C >= 1);
    if (rows == 0)
        return;
    const int64_t n = (int64_t)rows * C;
    DALLE_LAUNCH(embed_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, table->data, pos_table ? pos_table->data : NULL, dalle_cuda_of(be)->ops.weight_dtype, ids,
     pos_table ? pos : NULL, rows, C);
    CUDA_LAUNCHED("embed_dev");
}

__global__ void patchify_kernel(float *y, const float *x, int B, int H, int W, int C, int p) {
    const int pw = W / p;
    const int64_t P = (int64_t)p * p * C;
    GRID_STRIDE(i, (int64_t)B * H * W * C) {
        /* output index i = ((b·ph + py)·pw + px)·P + (dy·p + dx)·C + c */
        const int64_t patch = i / P, e = i % P;
        const int64_t c = e % C, dx = (e / C) % p, dy = e / ((int64_t)C * p);
        const int64_t px = patch % pw, bp = patch / pw; // bp = b·ph + py
        const int64_t row = bp * p + dy;                // b·H + py·p + dy
        y[i] = x[(row * W + px * p + dx) * C + c];
    }
}

extern "C" void dalle_cuda_patchify(dalle_backend *be, float *y, const float *x, int B, int H,
                                    int W, int C, int p) {
    DALLE_ASSERT(B >= 0 && C >= 1 && p >= 1 && H >= p && W >= p && H % p == 0 && W % p == 0);
    const int64_t n = (int64_t)B * H * W * C;
    if (n == 0)
        return;
    DALLE_LAUNCH(patchify_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, x, B, H, W, C, p);
    CUDA_LAUNCHED("patchify");
}

__global__ void upsample2x_kernel(float *y, const float *x, int B, int H, int W, int C) {
    GRID_STRIDE(i, (int64_t)B * 4 * H * W * C) {
        const int64_t c = i % C, ox = (i / C) % (2 * W), orow = i / ((int64_t)C * 2 * W);
        const int64_t b = orow / (2 * H), oy = orow % (2 * H);
        y[i] = x[(((b * H) + oy / 2) * W + ox / 2) * C + c];
    }
}

extern "C" void dalle_cuda_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H,
                                      int W, int C) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && C >= 1 && y != x);
    const int64_t n = (int64_t)B * 4 * H * W * C;
    if (n == 0)
        return;
    DALLE_LAUNCH(upsample2x_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, x, B, H, W, C);
    CUDA_LAUNCHED("upsample2x");
}

__global__ void gelu_mul_kernel(float *y, const float *a, const float *b, int64_t n) {
    const float rsqrt2 = 0.70710678118654752f;
    GRID_STRIDE(i, n) {
        const float ai = a[i];
        y[i] = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, ai), erfcf(__fmul_rn(-ai, rsqrt2))), b[i]);
    }
}

extern "C" void dalle_cuda_gelu_mul(dalle_backend *be, float *y, const float *a, const float *b,
                                    int64_t n) {
    DALLE_ASSERT(n >= 0);
    if (n == 0)
        return;
    DALLE_LAUNCH(gelu_mul_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, a, b, n);
    CUDA_LAUNCHED("gelu_mul");
}

__global__ void quick_gelu_kernel(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        y[i] = v / (1.0f + expf(__fmul_rn(-1.702f, v)));
    }
}

extern "C" void dalle_cuda_quick_gelu(dalle_backend *be, float *y, const float *x, int64_t n) {
    DALLE_ASSERT(n >= 0);
    if (n == 0)
        return;
    DALLE_LAUNCH(quick_gelu_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, x, n);
    CUDA_LAUNCHED("quick_gelu");
}

__global__ void bias_add_kernel(float *y, const void *bias, int dt, int rows, int N) {
    GRID_STRIDE(i, (int64_t)rows * N) y[i] = __fadd_rn(y[i], dalle_ldw(bias, dt, i % N));
}

extern "C" void dalle_cuda_bias_add(dalle_backend *be, float *y, const dalle_tensor *bias, int rows,
                                    int N) {
    DALLE_ASSERT(bias && bias->data && rows >= 0 && N >= 1 && dalle_tensor_numel(bias) == N);
    const int64_t n = (int64_t)rows * N;
    if (n == 0)
        return;
    DALLE_LAUNCH(bias_add_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, bias->data, dalle_cuda_of(be)->ops.weight_dtype, rows, N);
    CUDA_LAUNCHED("bias_add");
}

__global__ void add_kernel(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], x[i]);
}

extern "C" void dalle_cuda_add(dalle_backend *be, float *y, const float *x, int64_t n) {
    DALLE_ASSERT(n >= 0);
    if (n == 0)
        return;
    DALLE_LAUNCH(add_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, x, n);
    CUDA_LAUNCHED("add");
}

/* ---- benchmark helper (tools/gpu/gpu_bench.c): fill device memory without a host copy ---- */

__global__ void fill_random_kernel(void *p, int64_t n, int dt, float scale, uint64_t seed) {
    GRID_STRIDE(i, n) {
        uint64_t z = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        const float v =
            ((float)((z >> 40) & 0xffffff) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
        if (dt == DALLE_F32)
            ((float *)p)[i] = v;
        else if (dt == DALLE_F16)
            ((__half *)p)[i] = __float2half_rn(v);
        else
            ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    }
}

extern "C" void dalle_cuda_fill_random(dalle_backend *be, void *p, int64_t n, dalle_dtype dtype,
                                       float scale, uint64_t seed) {
    if (n <= 0)
        return;
    DALLE_LAUNCH(fill_random_kernel, dalle_cuda_blocks(n, EW_THREADS), EW_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (p, n, (int)dtype, scale, seed);
    CUDA_LAUNCHED("fill_random");
}
