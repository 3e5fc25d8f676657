/* norm.c — CPU normalizations (contracts in ops.h).
 *
 * layernorm over the last axis: y = (x − mean)/sqrt(var + eps)·gamma + beta with the biased
 * variance. Mean and variance are two-pass, accumulated in double; the output is fp32.
 * gamma NULL = 1, beta NULL = 0; y may equal x (a row is read fully before written).
 *
 * group_norm takes per (image, group) the mean, then the variance of the centred values
 * (two passes, channel sums in double over a fixed split of the rows into as many parts as
 * threads, added in order, biased), then writes
 * y = (x − mean)·(rstd·gamma) + beta and, when asked, y·sigmoid(y); the mean is
 * subtracted as a float pair (hi + lo), so maps with a large offset keep their precision.
 */
#include <math.h>
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

typedef struct {
    float *y;
    const float *x, *g, *b;
    int C;
    float eps;
} layernorm_args;

static void layernorm_item(void *ctx, int64_t r, int thread) {
    const layernorm_args *a = ctx;
    (void)thread;
    norm_row(a->y + r * a->C, a->x + r * a->C, a->g, a->b, a->C, a->eps); // [rows, C]
}

void dalle_cpu_layernorm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                         const dalle_tensor *beta, int rows, int C, float eps) {
    DALLE_ASSERT(rows >= 0 && C >= 1 && eps >= 0);
    const float *g = gamma ? dalle_cpu_f32(gamma) : NULL; // [C]
    const float *b = beta ? dalle_cpu_f32(beta) : NULL;   // [C]
    DALLE_ASSERT(!gamma || dalle_tensor_numel(gamma) == C);
    DALLE_ASSERT(!beta || dalle_tensor_numel(beta) == C);
    layernorm_args a = {.y = y, .x = x, .g = g, .b = b, .C = C, .eps = eps};
    dalle_cpu_for(be, rows, (int64_t)rows * C >= DALLE_CPU_PAR_MIN, layernorm_item, &a);
}

/* Channel sums of rows [0, HW) in nt parts of HW / nt rows, the first HW mod nt parts one
 * row longer (a split of HW and nt only): part p sums into part[p, :]. */
typedef struct {
    double *part;
    const float *x;
    const double *center;
    int64_t HW;
    int C, nt;
} sums_args;

static void sums_item(void *ctx, int64_t p, int thread) {
    const sums_args *a = ctx;
    (void)thread;
    const int C = a->C;
    double *restrict s = a->part + (size_t)p * C;
    const int64_t q = a->HW / a->nt, extra = a->HW % a->nt;
    const int64_t r0 = p * q + (p < extra ? p : extra), r1 = r0 + q + (p < extra);
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict row = a->x + r * C;
        if (a->center) {
#pragma omp simd
            for (int c = 0; c < C; c++) {
                const double d = row[c] - a->center[c];
                s[c] += d * d;
            }
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                s[c] += row[c];
        }
    }
}

/* acc[c] = Σ_r x[r, c] (center NULL) or Σ_r (x[r, c] − center[c])², r < HW, in double.
 * part: [nt, C] partial sums. */
static void channel_sums(dalle_backend *be, double *acc, double *part, const float *x,
                         const double *center, int64_t HW, int C, int nt) {
    memset(part, 0, (size_t)nt * C * sizeof *part);
    sums_args a = {.part = part, .x = x, .center = center, .HW = HW, .C = C, .nt = nt};
    dalle_cpu_for(be, nt, 1, sums_item, &a);
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

/* y = (x − hi − lo)·scale + beta per row (then ·sigmoid when swish). */
typedef struct {
    float *y;
    const float *x, *hi, *lo, *scale, *bt;
    int C, swish;
} gn_apply_args;

static void gn_apply_item(void *ctx, int64_t r, int thread) {
    const gn_apply_args *a = ctx;
    (void)thread;
    const int C = a->C;
    const float *restrict xr = a->x + r * C, *restrict hi = a->hi, *restrict lo = a->lo;
    const float *restrict scale = a->scale, *restrict bt = a->bt;
    float *restrict yr = a->y + r * C;
    if (a->swish) {
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
        channel_sums(be, acc, part, xb, NULL, HW, C, nt);
        group_means(mean, acc, C, groups, n);
        channel_sums(be, acc, part, xb, mean, HW, C, nt);
        group_means(acc, acc, C, groups, n); // biased variance per channel's group
        for (int c = 0; c < C; c++) {
            hi[c] = (float)mean[c];
            lo[c] = (float)(mean[c] - hi[c]);
            scale[c] = (float)(1.0 / sqrt(acc[c] + eps)) * ga[c];
        }
        gn_apply_args a = {
            .y = yb, .x = xb, .hi = hi, .lo = lo, .scale = scale, .bt = bt, .C = C, .swish = swish};
        dalle_cpu_for(be, HW, nt > 1, gn_apply_item, &a);
    }
}
