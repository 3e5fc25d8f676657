/* linalg.c — CPU matmul: y[M,N] = x[M,K] · W[:N,:K]ᵀ (+ y). W is a row-major [N_w, K] fp32
 * weight with N ≤ N_w; only its first N rows are read.
 *
 * Paths, chosen by M (decode steps have M = 2 rows per image):
 *  - M = 1: OpenBLAS sgemv.
 *  - 2 ≤ M ≤ DALLE_CPU_SMALL_M on AVX2 machines: our own kernel, which streams W once, a
 *    block of W rows at a time (kept in cache) against all M rows of x. OpenBLAS sgemm packs
 *    all of W on every call and is memory-bound at a fraction of the bandwidth there. On the
 *    2-core dev box: M = 2, N = 16384, K = 1024 takes 4.1 ms in sgemm and 1.7-2.0 ms here; a
 *    mini-sized decode step (12 layers, d = 1024, F = 2730, lm_head 16384, M = 2) 170 ms
 *    with sgemm and 60 ms with this kernel. Blocks are handed out dynamically so that a
 *    thread slowed by another process does not hold up the others.
 *  - otherwise: OpenBLAS sgemm.
 * OpenBLAS threads are set once, process-wide, by dalle_backend_cpu_new.
 */
#include <cblas.h>

#include "kernels/cpu/cpu.h"

#define DALLE_CPU_SMALL_M 4
#define DOT_LANES         16 /* independent partial sums: two AVX2 vectors */
#define W_BLOCK           8  /* W rows reused from cache by the M rows of x */

/* Σ_k a[k]·b[k] with DOT_LANES interleaved partial sums (a fixed order on every machine). */
__attribute__((target("avx2"))) static inline float dot_avx2(const float *restrict a,
                                                             const float *restrict b, int K) {
    float acc[DOT_LANES] = {0};
    int k = 0;
    for (; k + DOT_LANES <= K; k += DOT_LANES)
        for (int u = 0; u < DOT_LANES; u++)
            acc[u] += a[k + u] * b[k + u];
    float s = 0;
    for (int u = 0; u < DOT_LANES; u++)
        s += acc[u];
    for (; k < K; k++)
        s += a[k] * b[k];
    return s;
}

__attribute__((target("avx2"))) static void matmul_small_m(float *restrict y,
                                                           const float *restrict x,
                                                           const float *restrict W, int M, int N,
                                                           int K, int accumulate, int threads) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int n0 = 0; n0 < N; n0 += W_BLOCK) {
        const int n1 = n0 + W_BLOCK < N ? n0 + W_BLOCK : N;
        for (int m = 0; m < M; m++)
            for (int n = n0; n < n1; n++) {
                const float s = dot_avx2(x + (size_t)m * K, W + (size_t)n * K, K);
                y[(size_t)m * N + n] = accumulate ? y[(size_t)m * N + n] + s : s; // [M, N]
            }
    }
}

void dalle_cpu_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                      int N, int K, int accumulate) {
    const float *W = dalle_cpu_f32(w); // [N_w, K]
    DALLE_ASSERT(w->ndim == 2 && N >= 1 && N <= w->shape[0] && K >= 1 && K == w->shape[1]);
    DALLE_ASSERT(M >= 0);
    const float beta = accumulate ? 1.0f : 0.0f;
    if (M == 0)
        return;
    if (M == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, W, K, x, 1, beta, y, 1);
    else if (M <= DALLE_CPU_SMALL_M && __builtin_cpu_supports("avx2"))
        matmul_small_m(y, x, W, M, N, K, accumulate, dalle_cpu_of(be)->threads);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, beta, y,
                    N); // [M, N]
}
