/* conv.c — CPU conv2d, GroupNorm (+ swish) and nearest ×2 upsample on NHWC fp32 maps
 * (contracts in ops.h).
 *
 * conv2d is y[B·H·W, Cout] = patches[B·H·W, k·k·Cin] · w[Cout, k·k·Cin]ᵀ + bias: a 1×1
 * kernel is one GEMM on x itself; for k > 1 the patch matrix (im2col with zero padding,
 * each patch laid out (dy, dx, c) like the weight) is built in the backend scratch for a
 * band of whole output rows at a time (at most DALLE_CPU_CONV_BAND_BYTES; a band may span
 * images), then multiplied straight into y by the GEMM core (linalg.c; the weight is a
 * [Cout, k·k·Cin] matrix, packed at load). Each output pixel is one row of that GEMM, so a
 * map's values do not depend on the images decoded beside it.
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

/* cols[m, (dy·k + dx)·Cin + c] = x[b, h+dy−p, w+dx−p, c], 0 outside the image, for the
 * output pixels m of the nr rows starting at flattened row r0 (r = b·H + h). */
static void im2col_band(float *cols, const float *x, int64_t r0, int nr, int H, int W, int Cin,
                        int k, int threads) {
    const int p = k / 2;
    const size_t K = (size_t)k * k * Cin, tap = (size_t)Cin * sizeof(float);
    const int64_t n = (int64_t)nr * W;
#pragma omp parallel for num_threads(threads) if (n * (int64_t)K >= DALLE_CPU_PAR_MIN)
    for (int64_t m = 0; m < n; m++) {
        const int64_t r = r0 + m / W;
        const int64_t b = r / H;
        const int h = (int)(r % H), w = (int)(m % W);
        const int dx0 = w < p ? p - w : 0;             // first tap with w+dx−p ≥ 0
        const int dx1 = W - w + p < k ? W - w + p : k; // one past the last with w+dx−p < W
        float *patch = cols + (size_t)m * K;           // [k, k, Cin]
        for (int dy = 0; dy < k; dy++) {
            float *d = patch + (size_t)dy * k * Cin;
            const int ih = h + dy - p;
            if (ih < 0 || ih >= H) {
                memset(d, 0, (size_t)k * tap);
                continue;
            }
            const float *s = x + (((size_t)b * H + ih) * W + (w + dx0 - p)) * Cin;
            memset(d, 0, (size_t)dx0 * tap);
            memcpy(d + (size_t)dx0 * Cin, s, (size_t)(dx1 - dx0) * tap);
            memset(d + (size_t)dx1 * Cin, 0, (size_t)(k - dx1) * tap);
        }
    }
}

void dalle_cpu_conv2d(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                      const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && Cin >= 1 && Cout >= 1 && k >= 1 && k % 2 == 1);
    DALLE_ASSERT(w->ndim == 4 && w->shape[0] == Cout && w->shape[1] == k && w->shape[2] == k &&
                 w->shape[3] == Cin);
    const float *bs = bias ? dalle_cpu_f32(bias) : NULL; // [Cout]
    DALLE_ASSERT(!bias || dalle_tensor_numel(bias) == Cout);
    DALLE_ASSERT(y != x);
    const int threads = dalle_cpu_of(be)->threads;
    const int64_t rows = (int64_t)B * H; // output rows of all images
    const int64_t K = (int64_t)k * k * Cin;
    DALLE_ASSERT(rows * W <= INT_MAX && K <= INT_MAX);
    if (rows == 0)
        return;
    if (k == 1) {
        const int M = (int)(rows * W);
        const int acc = bias_rows(y, bs, M, Cout, threads);
        dalle_cpu_gemm(be, y, (size_t)Cout, x, (size_t)Cin, w, M, Cout, Cin, acc); // [B·H·W, Cout]
        return;
    }
    const size_t row_bytes = (size_t)W * (size_t)K * sizeof(float);
    int64_t band = (int64_t)(DALLE_CPU_CONV_BAND_BYTES / row_bytes);
    if (band < 1)
        band = 1;
    if (band > rows)
        band = rows;
    float *cols = dalle_cpu_scratch(be, (size_t)band * row_bytes); // [band·W, K]
    for (int64_t r0 = 0; r0 < rows; r0 += band) {
        const int nr = (int)(rows - r0 < band ? rows - r0 : band);
        const int M = nr * W;
        float *yb = y + r0 * W * Cout; // [nr·W, Cout]
        im2col_band(cols, x, r0, nr, H, W, Cin, k, threads);
        const int acc = bias_rows(yb, bs, M, Cout, threads);
        dalle_cpu_gemm(be, yb, (size_t)Cout, cols, (size_t)K, w, M, Cout, (int)K, acc);
    }
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
    if (B == 0)
        return;
    /* the conv uses the backend scratch, so the upsampled map gets its own buffer */
    float *u = malloc((size_t)B * H * W * Cin * sizeof *u); // [B, H, W, Cin]
    DALLE_ASSERT(u);
    dalle_cpu_upsample2x(be, u, x, B, H / 2, W / 2, Cin);
    dalle_cpu_conv2d(be, y, u, w, bias, B, H, W, Cin, Cout, k);
    free(u);
}

void dalle_cpu_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                       int32_t *nonfinite) {
    (void)be;
    DALLE_ASSERT(n >= 0);
    int bad = 0;
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
    float *t = malloc((size_t)B * H * W * Cin * sizeof *t); // [B, H, W, Cin]
    DALLE_ASSERT(t);
    dalle_cpu_group_norm(be, t, x, gamma, beta, B, H * W, Cin, groups, eps, swish);
    dalle_cpu_conv2d(be, y, t, w, bias, B, H, W, Cin, Cout, k);
    free(t);
}
