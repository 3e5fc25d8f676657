/* conv.c — CPU conv2d, GroupNorm (+ swish) and nearest ×2 upsample on NHWC fp32 maps
 * (contracts in ops.h).
 *
 * conv2d is y[B·H·W, Cout] = patches[B·H·W, k·k·Cin] · w[Cout, k·k·Cin]ᵀ + bias on the
 * GEMM core (linalg.c; the weight is a [Cout, k·k·Cin] matrix, packed at load), with no
 * patch matrix in memory: row m of the GEMM is output pixel m, and its segment dy·k + dx is
 * the Cin channels of the input pixel under tap (dy, dx) (a zero row outside the image), the
 * order of the weight's (dy, dx, c). conv2d_up2x reads the taps from the ×2 nearest
 * upsampled map by index, so that map is never built either. A 1×1 kernel is one GEMM on x
 * itself. Each output pixel is one row of the GEMM, so a map's values do not depend on the
 * images decoded beside it.
 * group_norm takes per (image, group) the mean, then the variance of the centred values
 * (two passes, per-thread channel sums in double, biased), then writes
 * y = (x − mean)·(rstd·gamma) + beta and, when asked, y·sigmoid(y); the mean is
 * subtracted as a float pair (hi + lo), so maps with a large offset keep their precision.
 */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

/* y[n, N] = bias broadcast over rows; nothing when bias is NULL. Returns whether the GEMM
 * should add its product to what y now holds. */
static int bias_rows(float *y, const float *bias, int64_t n, int N, int threads) {
    if (!bias)
        return 0;
#pragma omp parallel for num_threads(threads) if (n * N >= DALLE_CPU_PAR_MIN)
    for (int64_t r = 0; r < n; r++)
        memcpy(y + r * N, bias, (size_t)N * sizeof(float));
    return 1;
}

/* The taps of output pixels as GEMM rows (see the top of the file). */
typedef struct {
    dalle_cpu_rows base;
    const float *x, *zero; // x [B, H or H/2, W or W/2, Cin]; zero [Cin]
    int H, W, Cin, k, up;  // H, W: the output map
} tap_rows;

static void tap_get(const dalle_cpu_rows *rows, int m, int mr, const float **ptr, int stride) {
    const tap_rows *t = (const tap_rows *)rows;
    const int p = t->k / 2, sh = t->up ? t->H / 2 : t->H, sw = t->up ? t->W / 2 : t->W;
    for (int r = 0; r < mr; r++) {
        const int px = m + r, w = px % t->W, bh = px / t->W, h = bh % t->H, b = bh / t->H;
        const float *img = t->x + (size_t)b * sh * sw * t->Cin; // input image b
        for (int dy = 0; dy < t->k; dy++) {
            const int ih = h + dy - p, sy = t->up ? ih / 2 : ih;
            for (int dx = 0; dx < t->k; dx++) {
                const int iw = w + dx - p, sx = t->up ? iw / 2 : iw;
                const int inside = ih >= 0 && ih < t->H && iw >= 0 && iw < t->W;
                ptr[(dy * t->k + dx) * stride + r] =
                    inside ? img + ((size_t)sy * sw + sx) * t->Cin : t->zero;
            }
        }
    }
}

/* conv2d of x, or of its ×2 upsampling when up (x is then [B, H/2, W/2, Cin]). */
static void conv(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                 const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k, int up) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && Cin >= 1 && Cout >= 1 && k >= 1 && k % 2 == 1);
    DALLE_ASSERT(w->ndim == 4 && w->shape[0] == Cout && w->shape[1] == k && w->shape[2] == k &&
                 w->shape[3] == Cin);
    const float *bs = bias ? dalle_cpu_f32(bias) : NULL; // [Cout]
    DALLE_ASSERT(!bias || dalle_tensor_numel(bias) == Cout);
    DALLE_ASSERT(y != x);
    const int64_t M = (int64_t)B * H * W; // output pixels of all images
    DALLE_ASSERT(M <= INT_MAX && (int64_t)k * k * Cin <= INT_MAX && k * k <= DALLE_CPU_MAX_SEGS);
    if (M == 0)
        return;
    const int acc = bias_rows(y, bs, M, Cout, dalle_cpu_of(be)->threads);
    if (k == 1 && !up) {
        dalle_cpu_gemm(be, y, (size_t)Cout, x, (size_t)Cin, w, (int)M, Cout, Cin, acc);
        return;
    }
    float *zero = calloc((size_t)Cin, sizeof *zero);
    DALLE_ASSERT(zero);
    const tap_rows rows = {.base = {.get = tap_get, .K = k * k * Cin, .seg_len = Cin},
                           .x = x,
                           .zero = zero,
                           .H = H,
                           .W = W,
                           .Cin = Cin,
                           .k = k,
                           .up = up};
    dalle_cpu_gemm_rows(be, y, (size_t)Cout, &rows.base, w, (int)M, Cout, acc); // [B·H·W, Cout]
    free(zero);
}

void dalle_cpu_conv2d(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                      const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k) {
    conv(be, y, x, w, bias, B, H, W, Cin, Cout, k, 0);
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

void dalle_cpu_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && C >= 1 && y != x);
    const int threads = dalle_cpu_of(be)->threads;
    const size_t in_row = (size_t)W * C, out_row = 2 * in_row, px = (size_t)C * sizeof(float);
    const int64_t rows = (int64_t)B * H;
    // input row r = b·H + h becomes output rows b·2H + 2h = 2r and 2r + 1
#pragma omp parallel for num_threads(threads) if (rows * (int64_t)out_row >= DALLE_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + (size_t)r * in_row;  // [W, C]
        float *dst = y + (size_t)(2 * r) * out_row; // [2, 2W, C]
        for (int w = 0; w < W; w++) {
            memcpy(dst + (size_t)(2 * w) * C, src + (size_t)w * C, px);
            memcpy(dst + (size_t)(2 * w + 1) * C, src + (size_t)w * C, px);
        }
        memcpy(dst + out_row, dst, out_row * sizeof(float));
    }
}

void dalle_cpu_conv2d_up2x(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                           const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout,
                           int k) {
    DALLE_ASSERT(B >= 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0 && Cin >= 1);
    conv(be, y, x, w, bias, B, H, W, Cin, Cout, k, 1);
}

void dalle_cpu_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                       int32_t *nonfinite) {
    DALLE_ASSERT(n >= 0);
    int bad = 0;
#pragma omp parallel for num_threads(dalle_cpu_of(be)->threads)                                    \
    reduction(|                                                                                    \
              : bad) if (n >= DALLE_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] > 0 ? (x[i] < 1 ? x[i] : 1.0f) : 0.0f; // NaN → 0
        y[i] = (uint8_t)(v * 255.0f);
        bad |= !isfinite(x[i]);
    }
    if (bad && nonfinite)
        *nonfinite = 1;
}

void dalle_cpu_conv2d_gn(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                         const dalle_tensor *beta, int groups, float eps, int swish,
                         const dalle_tensor *w, const dalle_tensor *bias, int B, int H, int W,
                         int Cin, int Cout, int k) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && Cin >= 1);
    if (B == 0)
        return;
    float *t = dalle_cpu_map(be, (size_t)B * H * W * Cin * sizeof *t); // [B, H, W, Cin]
    if (!t)
        return; // be->failed is set
    dalle_cpu_group_norm(be, t, x, gamma, beta, B, H * W, Cin, groups, eps, swish);
    dalle_cpu_conv2d(be, y, t, w, bias, B, H, W, Cin, Cout, k);
}
