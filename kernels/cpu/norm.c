/* norm.c — CPU normalizations (contracts in ops.h).
 *
 * layernorm over the last axis: y = (x − mean)/sqrt(var + eps)·gamma + beta with the biased
 * variance. Mean and variance are two-pass, accumulated in double; the output is fp32.
 * gamma NULL = 1, beta NULL = 0; y may equal x (a row is read fully before written).
 *
 * group_norm takes per (image, group) the mean, then the variance of the centred values
 * (two passes, per-thread channel sums in double, biased), then writes
 * y = (x − mean)·(rstd·gamma) + beta and, when asked, y·sigmoid(y); the mean is
 * subtracted as a float pair (hi + lo), so maps with a large offset keep their precision.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/conv.h"
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

/* acc[c] = Σ_r x[r, c] (center NULL) or Σ_r (x[r, c] − center[c])², r < HW, in double.
 * part: [nt, C] per-thread partial sums. */
static void channel_sums(double *acc, double *part, const float *x, const double *center,
                         int64_t HW, int C, int nt) {
    memset(part, 0, (size_t)nt * C * sizeof *part);
#pragma omp parallel num_threads(nt)
    {
        double *restrict s = part + (size_t)omp_get_thread_num() * C;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < HW; r++) {
            const float *restrict row = x + r * C;
            if (center) {
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    const double d = row[c] - center[c];
                    s[c] += d * d;
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    s[c] += row[c];
            }
        }
    }
    for (int c = 0; c < C; c++) {
        double t = 0;
        for (int i = 0; i < nt; i++)
            t += part[(size_t)i * C + c];
        acc[c] = t;
    }
}

/* Per group g: the mean of acc over its channels divided by n, written to every channel of
 * the group in out (acc and out may be the same array). */
static void group_means(double *out, const double *acc, int C, int groups, double n) {
    const int cg = C / groups;
    for (int g = 0; g < groups; g++) {
        double t = 0;
        for (int c = g * cg; c < (g + 1) * cg; c++)
            t += acc[c];
        for (int c = g * cg; c < (g + 1) * cg; c++)
            out[c] = t / n;
    }
}

void dalle_cpu_group_norm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                          const dalle_tensor *beta, int B, int HW, int C, int groups, float eps,
                          int swish) {
    const float *ga = dalle_cpu_f32(gamma), *bt = dalle_cpu_f32(beta); // [C]
    DALLE_ASSERT(B >= 0 && HW >= 1 && C >= 1 && groups >= 1 && C % groups == 0 && eps >= 0);
    DALLE_ASSERT(dalle_tensor_numel(gamma) == C && dalle_tensor_numel(beta) == C);
    const int threads = dalle_cpu_of(be)->threads;
    const int nt = (int64_t)HW * C >= DALLE_CPU_PAR_MIN ? threads : 1;
    const double n = (double)HW * (C / groups); // values per (image, group)
    double *part = dalle_cpu_scratch(be, ((size_t)nt + 4) * C * sizeof(double));
    if (!part)
        return;                                                     // be->failed is set
    double *acc = part + (size_t)nt * C, *mean = acc + C;           // [C] each
    float *hi = (float *)(mean + C), *lo = hi + C, *scale = lo + C; // [C] each
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * HW * C; // [HW, C]
        float *yb = y + (size_t)b * HW * C;
        channel_sums(acc, part, xb, NULL, HW, C, nt);
        group_means(mean, acc, C, groups, n);
        channel_sums(acc, part, xb, mean, HW, C, nt);
        group_means(acc, acc, C, groups, n); // biased variance per channel's group
        for (int c = 0; c < C; c++) {
            hi[c] = (float)mean[c];
            lo[c] = (float)(mean[c] - hi[c]);
            scale[c] = (float)(1.0 / sqrt(acc[c] + eps)) * ga[c];
        }
#pragma omp parallel for num_threads(nt)
        for (int64_t r = 0; r < HW; r++) {
            const float *restrict xr = xb + r * C;
            float *restrict yr = yb + r * C;
            if (swish) {
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    const float t = (xr[c] - hi[c] - lo[c]) * scale[c] + bt[c];
                    yr[c] = t / (1.0f + expf(-t));
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    yr[c] = (xr[c] - hi[c] - lo[c]) * scale[c] + bt[c];
            }
        }
    }
}
