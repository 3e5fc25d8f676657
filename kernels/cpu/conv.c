/* conv.c — CPU conv2d and its fused forms (conv2d_up2x, conv2d_gn) on NHWC fp32 maps
 * (contracts in ops.h; GroupNorm is in norm.c, the ×2 upsample in elementwise.c).
 *
 * conv2d is y[B·H·W, Cout] = patches[B·H·W, k·k·Cin] · w[Cout, k·k·Cin]ᵀ + bias on the
 * GEMM core (linalg.c; the weight is a [Cout, k·k·Cin] matrix, packed at load), with no
 * patch matrix in memory: row m of the GEMM is output pixel m, and its segment dy·k + dx is
 * the Cin channels of the input pixel under tap (dy, dx) (a zero row outside the image), the
 * order of the weight's (dy, dx, c). conv2d_up2x reads the taps from the ×2 nearest
 * upsampled map by index, so that map is never built either. A 1×1 kernel is one GEMM on x
 * itself. Each output pixel is one row of the GEMM, so a map's values do not depend on the
 * images decoded beside it.
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

void dalle_cpu_conv2d_up2x(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                           const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout,
                           int k) {
    DALLE_ASSERT(B >= 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0 && Cin >= 1);
    conv(be, y, x, w, bias, B, H, W, Cin, Cout, k, 1);
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
