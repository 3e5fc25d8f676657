/* linalg.c — CPU matmul: y[M,N] = x[M,K] · W[:N,:K]ᵀ (+ y). W is a row-major [N_w, K] fp32
 * weight with N ≤ N_w; only its first N rows are read.
 *
 * Row invariance: on AVX2 machines every output y[m, n] is one dot product computed in one
 * fixed order (16 interleaved lanes over K, mul then add, lanes summed 0..15, then the K tail),
 * by one thread, whatever M, the row's position in x, or the thread count. So an image's
 * decode rows give the same logits whether it runs alone or batched with others (M = 2 rows
 * per image), and a seeded request is reproducible under any batching. OpenBLAS would not
 * promise this (sgemv, sgemm and its kernels sum in orders that depend on M).
 *
 * The kernel streams W once, a block of W_BLOCK rows at a time (kept in cache) against all M
 * rows of x, four x rows per W load (8 accumulator vectors). Decode steps are memory-bound
 * on W, where OpenBLAS sgemm (which packs all of W on every call) runs at a fraction of the
 * bandwidth: on the 2-core dev box M = 2, N = 16384, K = 1024 takes 4.1 ms in sgemm and
 * 1.7-2.0 ms here. Blocks are handed out dynamically, so a thread slowed by another process
 * does not hold up the others. Machines without AVX2 use OpenBLAS (not row-invariant).
 * OpenBLAS threads are set once, process-wide, by dalle_backend_cpu_new.
 */
#include <cblas.h>
#include <immintrin.h>

#include "kernels/cpu/cpu.h"

#define DOT_LANES 16 /* independent partial sums: two AVX2 vectors */
#define W_BLOCK   8  /* W rows reused from cache by the M rows of x */
#define X_TILE    4  /* x rows sharing one load of a W row */

/* The fixed reduction of the 16 lanes and the K tail shared by every path. */
__attribute__((target("avx2"))) static inline float dot_finish(__m256 lo, __m256 hi,
                                                               const float *restrict a,
                                                               const float *restrict b, int k,
                                                               int K) {
    float acc[DOT_LANES];
    _mm256_storeu_ps(acc, lo);
    _mm256_storeu_ps(acc + 8, hi);
    float s = 0;
    for (int u = 0; u < DOT_LANES; u++)
        s += acc[u];
    for (; k < K; k++)
        s += a[k] * b[k];
    return s;
}

/* out[r] = x_r · w for X_TILE rows x_r = x + r·K. */
__attribute__((target("avx2"))) static void dot_tile(float *out, const float *restrict x,
                                                     const float *restrict w, int K) {
    __m256 lo[X_TILE], hi[X_TILE];
    for (int r = 0; r < X_TILE; r++)
        lo[r] = hi[r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + DOT_LANES <= K; k += DOT_LANES) {
        const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
        for (int r = 0; r < X_TILE; r++) {
            const float *xr = x + (size_t)r * K + k;
            lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(_mm256_loadu_ps(xr), w0));
            hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(_mm256_loadu_ps(xr + 8), w1));
        }
    }
    for (int r = 0; r < X_TILE; r++)
        out[r] = dot_finish(lo[r], hi[r], x + (size_t)r * K, w, k, K);
}

/* x · w for one row: the same lanes, order and reduction as one row of dot_tile. */
__attribute__((target("avx2"))) static float dot_row(const float *restrict x,
                                                     const float *restrict w, int K) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int k = 0;
    for (; k + DOT_LANES <= K; k += DOT_LANES) {
        lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k)));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(x + k + 8),
                                             _mm256_loadu_ps(w + k + 8)));
    }
    return dot_finish(lo, hi, x, w, k, K);
}

__attribute__((target("avx2"))) static void matmul_rows(float *restrict y, const float *restrict x,
                                                        const float *restrict W, int M, int N,
                                                        int K, int accumulate, int threads) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (int n0 = 0; n0 < N; n0 += W_BLOCK) {
        const int n1 = n0 + W_BLOCK < N ? n0 + W_BLOCK : N;
        int m = 0;
        for (; m + X_TILE <= M; m += X_TILE)
            for (int n = n0; n < n1; n++) {
                float s[X_TILE];
                dot_tile(s, x + (size_t)m * K, W + (size_t)n * K, K);
                for (int r = 0; r < X_TILE; r++) {
                    float *yo = y + (size_t)(m + r) * N + n; // [M, N]
                    *yo = accumulate ? *yo + s[r] : s[r];
                }
            }
        for (; m < M; m++)
            for (int n = n0; n < n1; n++) {
                const float s = dot_row(x + (size_t)m * K, W + (size_t)n * K, K);
                float *yo = y + (size_t)m * N + n;
                *yo = accumulate ? *yo + s : s;
            }
    }
}

void dalle_cpu_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                      int N, int K, int accumulate) {
    const float *W = dalle_cpu_f32(w); // [N_w, K]
    DALLE_ASSERT(w->ndim == 2 && N >= 1 && N <= w->shape[0] && K >= 1 && K == w->shape[1]);
    DALLE_ASSERT(M >= 0);
    if (M == 0)
        return;
    if (__builtin_cpu_supports("avx2"))
        matmul_rows(y, x, W, M, N, K, accumulate, dalle_cpu_of(be)->threads);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K,
                    accumulate ? 1.0f : 0.0f, y, N); // [M, N]
}
