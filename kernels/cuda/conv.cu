/* conv.cu — conv2d on NHWC maps: y[B·H·W, Cout] = patches[B·H·W, k·k·Cin] · w[Cout, k·k·Cin]ᵀ
 * + bias. A 1×1 kernel is one GEMM on x itself. For k > 1: with 16-bit weights, the
 * implicit GEMM on tensor cores of conv_igemm.cu; with fp32 weights (the exact path) an
 * im2col kernel builds the patch matrix (zero padding, each patch (dy, dx, c) like the
 * weight) in scratch 0 for a band of whole output rows (≤ CONV_BAND_BYTES), then cuBLAS
 * multiplies it straight into y, whose rows were first filled with the bias (GEMM beta = 1),
 * as on the CPU. conv2d_up2x (the ×2 upsample folded into the conv) is at the end.
 */
#include <limits.h>

#include "kernels/cuda/internal.cuh"

#define CONV_THREADS    256
#define CONV_BAND_BYTES ((size_t)256 << 20)

__global__ void im2col_kernel(float *cols, const float *x, int64_t r0, int nr, int H, int W,
                              int Cin, int k) {
    const int p = k / 2;
    const int64_t K = (int64_t)k * k * Cin, n = (int64_t)nr * W * K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t m = i / K, e = i % K;
        const int c = (int)(e % Cin), dx = (int)((e / Cin) % k), dy = (int)(e / ((int64_t)Cin * k));
        const int64_t r = r0 + m / W; // r = b·H + h
        const int64_t b = r / H;
        const int h = (int)(r % H), w = (int)(m % W);
        const int ih = h + dy - p, iw = w + dx - p;
        cols[i] = (ih < 0 || ih >= H || iw < 0 || iw >= W)
                      ? 0.0f
                      : x[(((size_t)b * H + ih) * W + iw) * Cin + c];
    }
}

__global__ void fill_bias_kernel(float *y, const void *bias, int dt, int64_t rows, int N) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * N;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = dalle_ldw(bias, dt, i % N);
}

/* y[rows, N] = bias broadcast; returns the GEMM beta that adds the product to it. */
static float bias_rows(dalle_backend *be, float *y, const dalle_tensor *bias, int64_t rows, int N) {
    if (!bias)
        return 0.0f;
    DALLE_LAUNCH(fill_bias_kernel, dalle_cuda_blocks(rows * N, CONV_THREADS), CONV_THREADS, 0,
                 dalle_cuda_of(be)->stream)
    (y, bias->data, dalle_cuda_of(be)->ops.weight_dtype, rows, N);
    CUDA_LAUNCHED("conv2d");
    return 1.0f;
}

extern "C" void dalle_cuda_conv2d(dalle_backend *be, float *y, const float *x,
                                  const dalle_tensor *w, const dalle_tensor *bias, int B, int H,
                                  int W, int Cin, int Cout, int k) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && Cin >= 1 && Cout >= 1 && k >= 1 && k % 2 == 1);
    DALLE_ASSERT(w->ndim == 4 && w->shape[0] == Cout && w->shape[1] == k && w->shape[2] == k &&
                 w->shape[3] == Cin);
    DALLE_ASSERT(!bias || dalle_tensor_numel(bias) == Cout);
    DALLE_ASSERT(y != x);
    const int64_t rows = (int64_t)B * H;
    const int64_t K = (int64_t)k * k * Cin;
    DALLE_ASSERT(rows * W <= INT_MAX && K <= INT_MAX);
    if (rows == 0)
        return;
    if (k > 1 && w->dtype != DALLE_F32) { /* tensor cores, no im2col (conv_igemm.cu) */
        dalle_cuda_conv_igemm(be, y, x, w, bias, B, H, W, Cin, Cout, k, 0, NULL, NULL, 0, 0, 0,
                              "conv2d");
        return;
    }
    /* the GEMM sees w as [Cout, K] */
    dalle_tensor w2 = *w;
    w2.ndim = 2;
    w2.shape[0] = Cout;
    w2.shape[1] = K;
    if (k == 1) {
        const int M = (int)(rows * W);
        const float beta = bias_rows(be, y, bias, M, Cout);
        dalle_cuda_gemm_xwt(be, y, x, &w2, M, Cout, (int)K, beta, "conv2d");
        return;
    }
    const size_t row_bytes = (size_t)W * (size_t)K * sizeof(float);
    int64_t band = (int64_t)(CONV_BAND_BYTES / row_bytes);
    if (band < 1)
        band = 1;
    if (band > rows)
        band = rows;
    float *cols = (float *)dalle_cuda_scratch(be, 0, (size_t)band * row_bytes, "conv2d");
    for (int64_t r0 = 0; r0 < rows; r0 += band) {
        const int nr = (int)(rows - r0 < band ? rows - r0 : band);
        const int M = nr * W;
        float *yb = y + r0 * W * Cout; // [nr·W, Cout]
        const int64_t n = (int64_t)M * K;
        DALLE_LAUNCH(im2col_kernel, dalle_cuda_blocks(n, CONV_THREADS), CONV_THREADS, 0,
                     dalle_cuda_of(be)->stream)
        (cols, x, r0, nr, H, W, Cin, k);
        CUDA_LAUNCHED("conv2d");
        const float beta = bias_rows(be, yb, bias, M, Cout);
        dalle_cuda_gemm_xwt(be, yb, cols, &w2, M, Cout, (int)K, beta, "conv2d");
    }
}

/* conv2d of the ×2 nearest upsample of x [B, H/2, W/2, Cin] (ops.h conv2d_up2x): 16-bit
 * weights read x through the upsample inside the implicit GEMM; fp32 weights (the exact
 * path) upsample into scratch 1 and run conv2d. */
extern "C" void dalle_cuda_conv2d_up2x(dalle_backend *be, float *y, const float *x,
                                       const dalle_tensor *w, const dalle_tensor *bias, int B,
                                       int H, int W, int Cin, int Cout, int k) {
    DALLE_ASSERT(B >= 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0 && k % 2 == 1);
    DALLE_ASSERT(w->ndim == 4 && w->shape[0] == Cout && w->shape[1] == k && w->shape[2] == k &&
                 w->shape[3] == Cin);
    DALLE_ASSERT(!bias || dalle_tensor_numel(bias) == Cout);
    DALLE_ASSERT(y != x);
    if (B == 0)
        return;
    if (w->dtype != DALLE_F32) {
        dalle_cuda_conv_igemm(be, y, x, w, bias, B, H, W, Cin, Cout, k, 1, NULL, NULL, 0, 0, 0,
                              "conv2d_up2x");
        return;
    }
    float *u =
        (float *)dalle_cuda_scratch(be, 1, (size_t)B * H * W * Cin * sizeof(float), "conv2d_up2x");
    dalle_cuda_upsample2x(be, u, x, B, H / 2, W / 2, Cin);
    dalle_cuda_conv2d(be, y, u, w, bias, B, H, W, Cin, Cout, k);
}

/* conv2d of GroupNorm(x) (+ swish) (ops.h conv2d_gn): 16-bit weights (any k) normalise
 * while staging the implicit GEMM's input; fp32 weights run group_norm into scratch 1, then
 * conv2d (SGEMM, which does not use scratch 1). */
extern "C" void dalle_cuda_conv2d_gn(dalle_backend *be, float *y, const float *x,
                                     const dalle_tensor *gamma, const dalle_tensor *beta,
                                     int groups, float eps, int swish, const dalle_tensor *w,
                                     const dalle_tensor *bias, int B, int H, int W, int Cin,
                                     int Cout, int k) {
    DALLE_ASSERT(gamma && beta && dalle_tensor_numel(gamma) == Cin &&
                 dalle_tensor_numel(beta) == Cin);
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && groups >= 1 && Cin % groups == 0 && k % 2 == 1);
    DALLE_ASSERT(w->ndim == 4 && w->shape[0] == Cout && w->shape[1] == k && w->shape[2] == k &&
                 w->shape[3] == Cin);
    DALLE_ASSERT(!bias || dalle_tensor_numel(bias) == Cout);
    DALLE_ASSERT(y != x);
    if (B == 0)
        return;
    if (w->dtype != DALLE_F32) {
        dalle_cuda_conv_igemm(be, y, x, w, bias, B, H, W, Cin, Cout, k, 0, gamma, beta, groups, eps,
                              swish, "conv2d_gn");
        return;
    }
    float *t =
        (float *)dalle_cuda_scratch(be, 1, (size_t)B * H * W * Cin * sizeof(float), "conv2d_gn");
    dalle_cuda_group_norm(be, t, x, gamma, beta, B, H * W, Cin, groups, eps, swish);
    dalle_cuda_conv2d(be, y, t, w, bias, B, H, W, Cin, Cout, k);
}
