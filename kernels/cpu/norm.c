/* norm.c — CPU LayerNorm over the last axis: y = (x − mean)/sqrt(var + eps)·gamma + beta with
 * the biased variance. Mean and variance are two-pass, accumulated in double; the output is
 * fp32. gamma NULL = 1, beta NULL = 0; y may equal x (a row is read fully before written).
 */
#include <math.h>

#include "kernels/cpu/cpu.h"

static void norm_row(float *y, const float *x, const float *restrict g, const float *restrict b,
                     int C, float eps) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++)
        s += x[c];
    const double mean = s / C;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) {
        const double d = x[c] - mean;
        ss += d * d;
    }
    const float m = (float)mean;
    const float inv = (float)(1.0 / sqrt(ss / C + eps));
    if (g && b) {
#pragma omp simd
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * inv * g[c] + b[c];
    } else if (g) {
#pragma omp simd
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * inv * g[c];
    } else if (b) {
#pragma omp simd
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * inv + b[c];
    } else {
#pragma omp simd
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * inv;
    }
}

void dalle_cpu_layernorm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                         const dalle_tensor *beta, int rows, int C, float eps) {
    DALLE_ASSERT(rows >= 0 && C >= 1 && eps >= 0);
    const float *g = gamma ? dalle_cpu_f32(gamma) : NULL; // [C]
    const float *b = beta ? dalle_cpu_f32(beta) : NULL;   // [C]
    DALLE_ASSERT(!gamma || dalle_tensor_numel(gamma) == C);
    DALLE_ASSERT(!beta || dalle_tensor_numel(beta) == C);
    const int threads = dalle_cpu_of(be)->threads;
#pragma omp parallel for num_threads(threads) if ((int64_t)rows * C >= DALLE_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++)
        norm_row(y + (size_t)r * C, x + (size_t)r * C, g, b, C, eps); // [rows, C]
}
