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
 * A 3×3 convolution with at least WINO_MIN_COUT outputs runs as Winograd's F(2×2, 3×3)
 * instead (below): 16 GEMMs over 2×2 output tiles, 4 multiplies per output pixel and input
 * channel where the direct form needs 9. Its weight is packed at load in that form.
 */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

typedef struct {
    float *y;
    const float *bias;
    int N;
} bias_args;

static void bias_item(void *ctx, int64_t r, int thread) {
    const bias_args *a = ctx;
    (void)thread;
    memcpy(a->y + r * a->N, a->bias, (size_t)a->N * sizeof(float));
}

/* y[n, N] = bias broadcast over rows; nothing when bias is NULL. Returns whether the GEMM
 * should add its product to what y now holds. */
static int bias_rows(dalle_backend *be, float *y, const float *bias, int64_t n, int N) {
    if (!bias)
        return 0;
    bias_args a = {.y = y, .bias = bias, .N = N};
    dalle_cpu_for(be, n, n * N >= DALLE_CPU_PAR_MIN, bias_item, &a);
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

/* ---- Winograd F(2×2, 3×3) -------------------------------------------------------------
 * A 2×2 block of output pixels (a tile) of a 3×3 convolution is, per output channel,
 *   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
 * with d_c the tile's 4×4 input patch of channel c and g_c its 3×3 kernel (Lavin & Gray's
 * minimal filtering). Over all channels that is 16 GEMMs, one per element ξ of the 4×4
 * transformed tile: M_ξ[tiles, Cout] = V_ξ[tiles, Cin] · U_ξ[Cout, Cin]ᵀ, V = Bᵀ d B,
 * U = G g Gᵀ. U is computed once at load (in double, rounded to fp32, each ξ packed as a
 * GEMM weight); B and A hold only 0 and ±1, so both transforms are additions in a fixed
 * order. Each tile depends on its own patch only and is one row of each GEMM, whose order
 * depends on Cin alone: the batch promise holds as for the direct form. The threads take
 * blocks of tiles, each through both transforms and its 16 GEMMs (nested, so on that
 * thread), so V and M of a block stay in its core's cache.
 */
#define WINO_MIN_COUT DALLE_CPU_PANEL /* fewer outputs (an RGB head): the direct form */
/* The transforms are additions only, so every instruction set gives the same bits: x86
 * builds compile them for AVX-512, AVX2 and the baseline, picked at load by the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WINO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WINO_CLONES
#endif
#define WINO_MIN_BLOCK 16 /* tiles per block of one thread: at least, */
#define WINO_MAX_BLOCK 96 /* at most (one GEMM row block) */

int dalle_cpu_conv_winograd(const dalle_tensor *w) {
    return w->ndim == 4 && w->shape[1] == 3 && w->shape[2] == 3 && w->shape[0] >= WINO_MIN_COUT;
}

size_t dalle_cpu_winograd_pack_bytes(const dalle_tensor *w) {
    return 16 * dalle_cpu_pack_bytes(w->shape[0], w->shape[3], DALLE_F32);
}

void dalle_cpu_winograd_pack(void *dst, const void *src, const dalle_tensor *w) {
    const int64_t Cout = w->shape[0], Cin = w->shape[3], n = Cout * 9 * Cin;
    float *g = malloc((size_t)n * sizeof *g);               // [Cout, 3, 3, Cin]
    float *u = malloc((size_t)16 * Cout * Cin * sizeof *u); // [16, Cout, Cin]
    DALLE_ASSERT(g && u);
    dalle_cpu_widen(g, src, w->dtype, n, 0);
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
#pragma omp parallel for if (n >= DALLE_CPU_PAR_MIN)
    for (int64_t o = 0; o < Cout; o++)
        for (int64_t c = 0; c < Cin; c++) {
            double t[4][3]; // G g
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++) {
                    t[i][j] = 0;
                    for (int l = 0; l < 3; l++)
                        t[i][j] += G[i][l] * g[((o * 3 + l) * 3 + j) * Cin + c];
                }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const double v = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
                    u[((size_t)(i * 4 + j) * Cout + o) * Cin + c] = (float)v;
                }
        }
    const size_t pb = dalle_cpu_pack_bytes(Cout, Cin, DALLE_F32);
    for (int xi = 0; xi < 16; xi++)
        dalle_cpu_pack((uint8_t *)dst + xi * pb, u + (size_t)xi * Cout * Cin, Cout, Cin, DALLE_F32);
    free(g);
    free(u);
}

/* V[ξ, i, :] = (Bᵀ d B)[ξ] for tile t (row i of the chunk); d read from x (its ×2 upsampling
 * when up), zero outside the H × W map. */
WINO_CLONES static void wino_in(float *V, size_t ldv, int i, int64_t t, const float *x,
                                const float *zero, int H, int W, int Cin, int up) {
    const int th = (H + 1) / 2, tw = (W + 1) / 2, sh = up ? H / 2 : H, sw = up ? W / 2 : W;
    const int64_t b = t / ((int64_t)th * tw), r = t % ((int64_t)th * tw);
    const int h0 = (int)(r / tw) * 2 - 1, w0 = (int)(r % tw) * 2 - 1;
    const float *img = x + (size_t)b * sh * sw * Cin, *p[16];
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 4; c++) {
            const int ih = h0 + a, iw = w0 + c;
            const int sy = up ? ih / 2 : ih, sx = up ? iw / 2 : iw;
            p[a * 4 + c] =
                ih >= 0 && ih < H && iw >= 0 && iw < W ? img + ((size_t)sy * sw + sx) * Cin : zero;
        }
    const float *restrict d0 = p[0], *restrict d1 = p[1], *restrict d2 = p[2], *restrict d3 = p[3];
    const float *restrict d4 = p[4], *restrict d5 = p[5], *restrict d6 = p[6], *restrict d7 = p[7];
    const float *restrict d8 = p[8], *restrict d9 = p[9], *restrict d10 = p[10],
                          *restrict d11 = p[11], *restrict d12 = p[12], *restrict d13 = p[13],
                          *restrict d14 = p[14], *restrict d15 = p[15];
    float *restrict v = V + (size_t)i * Cin;
#pragma omp simd
    for (int c = 0; c < Cin; c++) {
        // Bᵀ d: rows r0 = d0 − d2, r1 = d1 + d2, r2 = d2 − d1, r3 = d1 − d3 (d rows of 4)
        const float r00 = d0[c] - d8[c], r01 = d1[c] - d9[c], r02 = d2[c] - d10[c],
                    r03 = d3[c] - d11[c];
        const float r10 = d4[c] + d8[c], r11 = d5[c] + d9[c], r12 = d6[c] + d10[c],
                    r13 = d7[c] + d11[c];
        const float r20 = d8[c] - d4[c], r21 = d9[c] - d5[c], r22 = d10[c] - d6[c],
                    r23 = d11[c] - d7[c];
        const float r30 = d4[c] - d12[c], r31 = d5[c] - d13[c], r32 = d6[c] - d14[c],
                    r33 = d7[c] - d15[c];
        // (Bᵀ d) B: the same combination of each row's columns
        v[0 * ldv + c] = r00 - r02, v[1 * ldv + c] = r01 + r02, v[2 * ldv + c] = r02 - r01;
        v[3 * ldv + c] = r01 - r03, v[4 * ldv + c] = r10 - r12, v[5 * ldv + c] = r11 + r12;
        v[6 * ldv + c] = r12 - r11, v[7 * ldv + c] = r11 - r13, v[8 * ldv + c] = r20 - r22;
        v[9 * ldv + c] = r21 + r22, v[10 * ldv + c] = r22 - r21, v[11 * ldv + c] = r21 - r23;
        v[12 * ldv + c] = r30 - r32, v[13 * ldv + c] = r31 + r32, v[14 * ldv + c] = r32 - r31;
        v[15 * ldv + c] = r31 - r33;
    }
}

/* The output pixels of tile t from M[ξ, i, :] (Aᵀ m A), plus bias; y_tile: [4, Cout]. */
WINO_CLONES static void wino_out(float *y, float *y_tile, const float *Mm, size_t ldm, int i,
                                 int64_t t, const float *bias, int H, int W, int Cout) {
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    const int64_t b = t / ((int64_t)th * tw), r = t % ((int64_t)th * tw);
    const int h0 = (int)(r / tw) * 2, w0 = (int)(r % tw) * 2;
    float *out[4]; // the tile's pixels in y, row-major; NULL outside the map
    for (int a = 0; a < 4; a++) {
        const int h = h0 + a / 2, w = w0 + a % 2;
        out[a] = h < H && w < W ? y + (((size_t)b * H + h) * W + w) * Cout : NULL;
    }
    const float *restrict m = Mm + (size_t)i * Cout;
    float *restrict q = y_tile; // [4, Cout]: the tile's pixels, row-major
#pragma omp simd
    for (int o = 0; o < Cout; o++) {
        const float *mo = m + o;
        // Aᵀ m: rows s0 = m0 + m1 + m2, s1 = m1 − m2 − m3 (m rows of 4)
        const float s00 = mo[0] + mo[4 * ldm] + mo[8 * ldm],
                    s01 = mo[ldm] + mo[5 * ldm] + mo[9 * ldm],
                    s02 = mo[2 * ldm] + mo[6 * ldm] + mo[10 * ldm],
                    s03 = mo[3 * ldm] + mo[7 * ldm] + mo[11 * ldm];
        const float s10 = mo[4 * ldm] - mo[8 * ldm] - mo[12 * ldm],
                    s11 = mo[5 * ldm] - mo[9 * ldm] - mo[13 * ldm],
                    s12 = mo[6 * ldm] - mo[10 * ldm] - mo[14 * ldm],
                    s13 = mo[7 * ldm] - mo[11 * ldm] - mo[15 * ldm];
        const float bo = bias ? bias[o] : 0.0f;
        const float y00 = s00 + s01 + s02, y01 = s01 - s02 - s03;
        const float y10 = s10 + s11 + s12, y11 = s11 - s12 - s13;
        q[o] = bias ? bo + y00 : y00, q[Cout + o] = bias ? bo + y01 : y01;
        q[2 * Cout + o] = bias ? bo + y10 : y10, q[3 * Cout + o] = bias ? bo + y11 : y11;
    }
    for (int a = 0; a < 4; a++)
        if (out[a])
            memcpy(out[a], q + (size_t)a * Cout, (size_t)Cout * sizeof *q);
}

/* One block of tb tiles: input transform, the 16 GEMMs (nested: on this thread), output
 * transform, in this thread's slice of buf. */
typedef struct {
    float *y;
    const float *x, *zero, *bias;
    float *buf;
    const uint8_t *u;
    int64_t T, tb;
    size_t ldv, ldm, per, pb;
    int H, W, Cin, Cout, up;
    dalle_backend *be;
} wino_args;

static void wino_block(void *ctx, int64_t blk, int thread) {
    const wino_args *a = ctx;
    const size_t ldv = a->ldv, ldm = a->ldm;
    float *V = a->buf + (size_t)thread * a->per, *Mm = V + 16 * ldv;
    const int64_t t0 = blk * a->tb;
    const int n = (int)(a->T - t0 < a->tb ? a->T - t0 : a->tb);
    for (int i = 0; i < n; i++)
        wino_in(V, ldv, i, t0 + i, a->x, a->zero, a->H, a->W, a->Cin, a->up);
    for (int xi = 0; xi < 16; xi++) {
        const dalle_tensor uw = {.data = (void *)(a->u + xi * a->pb),
                                 .dtype = DALLE_F32,
                                 .ndim = 2,
                                 .shape = {a->Cout, a->Cin},
                                 .packed = 1};
        dalle_cpu_gemm(a->be, Mm + xi * ldm, (size_t)a->Cout, V + xi * ldv, (size_t)a->Cin, &uw, n,
                       a->Cout, a->Cin, 0); // [n, Cout]
    }
    for (int i = 0; i < n; i++)
        wino_out(a->y, Mm + 16 * ldm, Mm, ldm, i, t0 + i, a->bias, a->H, a->W, a->Cout);
}

static void conv_winograd(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                          const float *bias, int B, int H, int W, int Cin, int Cout, int up) {
    const int threads = dalle_cpu_of(be)->threads;
    const int64_t T = (int64_t)B * ((H + 1) / 2) * ((W + 1) / 2); // tiles of all images
    int64_t tb = (T + 4 * threads - 1) / (4 * threads);           // tiles per block
    tb = tb < WINO_MIN_BLOCK ? WINO_MIN_BLOCK : tb > WINO_MAX_BLOCK ? WINO_MAX_BLOCK : tb;
    const int64_t blocks = (T + tb - 1) / tb;
    const size_t ldv = (size_t)tb * Cin, ldm = (size_t)tb * Cout;
    const size_t per = 16 * (ldv + ldm) + 4 * (size_t)Cout;
    void *tmp = NULL;
    const uint8_t *u = w->data;
    if (!w->packed) { // a row-major weight (tests, ad-hoc tensors): transform it per call
        tmp = malloc(dalle_cpu_winograd_pack_bytes(w));
        DALLE_ASSERT(tmp);
        dalle_cpu_winograd_pack(tmp, w->data, w);
        u = tmp;
    }
    // per thread: V [16, tb, Cin], M [16, tb, Cout], a tile's output [4, Cout]; one zero pixel
    float *buf = dalle_cpu_scratch(be, ((size_t)threads * per + (size_t)Cin) * sizeof *buf);
    if (!buf) {
        free(tmp);
        return; // be->failed is set
    }
    float *zero = buf + (size_t)threads * per;
    memset(zero, 0, (size_t)Cin * sizeof *zero);
    const size_t pb = dalle_cpu_pack_bytes(Cout, Cin, DALLE_F32);
    wino_args a = {.y = y,
                   .x = x,
                   .buf = buf,
                   .zero = zero,
                   .u = u,
                   .bias = bias,
                   .T = T,
                   .tb = tb,
                   .ldv = ldv,
                   .ldm = ldm,
                   .per = per,
                   .pb = pb,
                   .H = H,
                   .W = W,
                   .Cin = Cin,
                   .Cout = Cout,
                   .up = up,
                   .be = be};
    dalle_cpu_for(be, blocks, blocks > 1, wino_block, &a);
    free(tmp);
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
    if (dalle_cpu_conv_winograd(w)) {
        conv_winograd(be, y, x, w, bs, B, H, W, Cin, Cout, up);
        return;
    }
    const int acc = bias_rows(be, y, bs, M, Cout);
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
