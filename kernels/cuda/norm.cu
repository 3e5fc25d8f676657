/* norm.cu — LayerNorm (one block per row) and GroupNorm (+ swish) on NHWC maps.
 *
 * Both mirror the CPU backend's numerics: statistics two-pass in double (mean, then the
 * biased variance of the centred values), outputs in fp32 with the same formulas, so the
 * two backends agree to a few ulps. GroupNorm's statistics and normalisation are
 * internal.cuh's dalle_gn_stats / dalle_gn_apply, shared with the fused conv2d_gn
 * (conv_igemm.cu), which the VQGAN uses instead of this kernel where a conv follows.
 */
#include "kernels/cuda/internal.cuh"

#define NORM_THREADS 256

__global__ void layernorm_kernel(float *y, const float *x, const void *g, const void *b, int dt,
                                 int C, float eps) {
    __shared__ double shm[32];
    const size_t r = blockIdx.x;
    const float *xr = x + r * C; // [rows, C]
    float *yr = y + r * C;
    double s = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        s += xr[c];
    const double mean = dalle_block_sum(s, shm) / C;
    double ss = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const double d = xr[c] - mean;
        ss += d * d;
    }
    ss = dalle_block_sum(ss, shm);
    const float m = (float)mean;
    const float inv = (float)(1.0 / sqrt(ss / C + eps));
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float t = __fmul_rn(__fsub_rn(xr[c], m), inv);
        if (g)
            t = __fmul_rn(t, dalle_ldw(g, dt, c));
        if (b)
            t = __fadd_rn(t, dalle_ldw(b, dt, c));
        yr[c] = t;
    }
}

extern "C" void dalle_cuda_layernorm(dalle_backend *be, float *y, const float *x,
                                     const dalle_tensor *gamma, const dalle_tensor *beta, int rows,
                                     int C, float eps) {
    DALLE_ASSERT(rows >= 0 && C >= 1 && eps >= 0);
    DALLE_ASSERT(!gamma || dalle_tensor_numel(gamma) == C);
    DALLE_ASSERT(!beta || dalle_tensor_numel(beta) == C);
    if (rows == 0)
        return;
    const int dt = dalle_cuda_of(be)->ops.weight_dtype;
    DALLE_LAUNCH(layernorm_kernel, rows, NORM_THREADS, 0, dalle_cuda_of(be)->stream)
    (y, x, gamma ? gamma->data : NULL, beta ? beta->data : NULL, dt, C, eps);
    CUDA_LAUNCHED("layernorm");
}

/* One block per (image, group): the group's values are x[b, r, g·cg + j], r < HW, j < cg. */
__global__ void group_norm_kernel(float *y, const float *x, const void *gamma, const void *beta,
                                  int dt, int HW, int C, int groups, float eps, int swish) {
    __shared__ double shm[32];
    const int b = blockIdx.x / groups, g = blockIdx.x % groups, cg = C / groups;
    const float *xb = x + (size_t)b * HW * C + (size_t)g * cg; // [HW, C] from channel g·cg
    float *yb = y + (size_t)b * HW * C + (size_t)g * cg;
    const int64_t n = (int64_t)HW * cg;
    const dalle_gn_stat st = dalle_gn_stats(xb, n, cg, C, eps, shm);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int c = (int)(i % cg);
        const size_t at = (i / cg) * C + c;
        yb[at] = dalle_gn_apply(xb[at], st, dalle_ldw(gamma, dt, g * cg + c),
                                dalle_ldw(beta, dt, g * cg + c), swish);
    }
}

extern "C" void dalle_cuda_group_norm(dalle_backend *be, float *y, const float *x,
                                      const dalle_tensor *gamma, const dalle_tensor *beta, int B,
                                      int HW, int C, int groups, float eps, int swish) {
    DALLE_ASSERT(gamma && beta);
    DALLE_ASSERT(B >= 0 && HW >= 1 && C >= 1 && groups >= 1 && C % groups == 0 && eps >= 0);
    DALLE_ASSERT(dalle_tensor_numel(gamma) == C && dalle_tensor_numel(beta) == C);
    if (B == 0)
        return;
    const int dt = dalle_cuda_of(be)->ops.weight_dtype;
    DALLE_LAUNCH(group_norm_kernel, B * groups, 1024, 0, dalle_cuda_of(be)->stream)
    (y, x, gamma->data, beta->data, dt, HW, C, groups, eps, swish);
    CUDA_LAUNCHED("group_norm");
}
