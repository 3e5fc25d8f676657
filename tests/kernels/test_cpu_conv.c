/* test_cpu_conv.c — the CPU backend's image-side ops (kernels/cpu/conv.c: conv2d, group
 * norm with and without swish, nearest ×2 upsample) against naive double-precision
 * references written here, called through the backend's ops table.
 *
 * Tolerance: max_i |ours_i − ref_i| ≤ 1e-5 · max_i |ref_i| (fp32 against double);
 * upsampling is a copy and must be exact. Inputs come from a fixed LCG. The conv cases
 * cover k = 1, 3, 5, odd sizes, a kernel wider than the image, Cin not a multiple of 8, no
 * bias, and a size whose GEMM row blocks cross image boundaries; 3×3 cases with at least
 * 16 outputs take the Winograd form (odd sizes: partial tiles), the others the direct one.
 * Batch invariance: conv2d, conv2d_up2x and conv2d_gn give each image the same bits alone
 * as in a batch of three; conv2d_up2x gives the bits of upsample2x then conv2d.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/ops.h"

#define TOL 1e-5

static dalle_backend *be;

static void setup(void) {
    be = dalle_backend_cpu_new(0);
    cr_assert_not_null(be);
}

static void teardown(void) {
    be->ops->destroy(be);
}

TestSuite(cpu_conv, .init = setup, .fini = teardown);

static uint64_t lcg_state = 12345;

static float frand(void) { /* uniform in [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg_state >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *random_buf(size_t n, float scale, float offset) {
    float *p = be->ops->alloc(be, n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = offset + scale * frand();
    return p;
}

static dalle_tensor weight(float *data, int ndim, const int64_t *shape) {
    dalle_tensor t = {.data = data, .dtype = DALLE_F32, .ndim = ndim};
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    return t;
}

static double rel_err(const float *ours, const double *ref, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(ours[i] - ref[i]);
        if (!(d <= diff))
            diff = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

Test(cpu_conv, ops_table_entries) {
    cr_assert_eq(be->ops->conv2d, dalle_cpu_conv2d);
    cr_assert_eq(be->ops->group_norm, dalle_cpu_group_norm);
    cr_assert_eq(be->ops->upsample2x, dalle_cpu_upsample2x);
}

/* ---- conv2d --------------------------------------------------------------------------- */

typedef struct {
    int B, H, W, Cin, Cout, k, bias;
} conv_case;

/* y[b,h,w,o] = bias[o] + Σ_{dy,dx,c} x[b, h+dy−p, w+dx−p, c] · wt[o, dy, dx, c] */
static void conv_ref(double *y, const float *x, const float *wt, const float *bias,
                     const conv_case *c) {
    const int p = c->k / 2;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int w = 0; w < c->W; w++)
                for (int o = 0; o < c->Cout; o++) {
                    double s = bias ? bias[o] : 0;
                    for (int dy = 0; dy < c->k; dy++)
                        for (int dx = 0; dx < c->k; dx++) {
                            const int ih = h + dy - p, iw = w + dx - p;
                            if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W)
                                continue;
                            const float *xp = x + (((size_t)b * c->H + ih) * c->W + iw) * c->Cin;
                            const float *wp = wt + (((size_t)o * c->k + dy) * c->k + dx) * c->Cin;
                            for (int i = 0; i < c->Cin; i++)
                                s += (double)xp[i] * wp[i];
                        }
                    y[(((size_t)b * c->H + h) * c->W + w) * c->Cout + o] = s;
                }
}

static void run_conv(const conv_case *c) {
    const size_t nx = (size_t)c->B * c->H * c->W * c->Cin;
    const size_t ny = (size_t)c->B * c->H * c->W * c->Cout;
    const size_t nw = (size_t)c->Cout * c->k * c->k * c->Cin;
    float *x = random_buf(nx, 1.0f, 0.0f), *wd = random_buf(nw, 0.5f, 0.0f);
    float *bd = random_buf((size_t)c->Cout, 1.0f, 0.0f);
    float *y = random_buf(ny, 100.0f, 0.0f); /* garbage: every element must be written */
    double *ref = malloc(ny * sizeof *ref);
    cr_assert_not_null(ref);
    const int64_t ws[4] = {c->Cout, c->k, c->k, c->Cin}, bsh[1] = {c->Cout};
    dalle_tensor w = weight(wd, 4, ws), b = weight(bd, 1, bsh);
    be->ops->conv2d(be, y, x, &w, c->bias ? &b : NULL, c->B, c->H, c->W, c->Cin, c->Cout, c->k);
    conv_ref(ref, x, wd, c->bias ? bd : NULL, c);
    const double e = rel_err(y, ref, ny);
    printf("conv2d B%d %dx%d Cin %d Cout %d k%d bias %d: max rel err %.3g\n", c->B, c->H, c->W,
           c->Cin, c->Cout, c->k, c->bias, e);
    cr_expect(e <= TOL, "conv2d B%d %dx%d Cin %d Cout %d k%d: max rel err %g > %g", c->B, c->H,
              c->W, c->Cin, c->Cout, c->k, e, TOL);
    free(ref);
    float *bufs[] = {x, wd, bd, y};
    for (size_t i = 0; i < 4; i++)
        be->ops->free(be, bufs[i]);
}

Test(cpu_conv, conv2d_1x1) {
    const conv_case cases[] = {
        {2, 5, 7, 3, 5, 1, 1}, {1, 4, 3, 13, 1, 1, 0}, {3, 1, 1, 9, 6, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_conv(&cases[i]);
}

Test(cpu_conv, conv2d_3x3_and_5x5) {
    const conv_case cases[] = {
        {1, 6, 5, 13, 7, 3, 1}, {2, 7, 4, 13, 6, 3, 0}, {1, 1, 1, 5, 4, 3, 1},
        {2, 2, 3, 3, 2, 3, 1},  {1, 3, 2, 3, 2, 5, 1},  {2, 9, 11, 17, 3, 5, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_conv(&cases[i]);
}

/* Winograd F(2×2, 3×3): odd and even sizes, partial tiles at the right and bottom edges,
 * several tile blocks per thread, Cin above one GEMM segment. */
Test(cpu_conv, conv2d_winograd) {
    const conv_case cases[] = {{1, 7, 9, 32, 16, 3, 1},
                               {2, 16, 16, 64, 48, 3, 0},
                               {1, 1, 3, 5, 17, 3, 1},
                               {3, 10, 6, 300, 32, 3, 1},
                               {1, 40, 33, 24, 20, 3, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int64_t ws[4] = {cases[i].Cout, 3, 3, cases[i].Cin};
        const dalle_tensor w = weight(NULL, 4, ws);
        cr_assert(dalle_cpu_conv_winograd(&w), "case %zu should take the Winograd form", i);
        run_conv(&cases[i]);
    }
    const int64_t rgb[4] = {3, 3, 3, 128}, k5[4] = {32, 5, 5, 8}, k1[4] = {32, 1, 1, 8};
    const dalle_tensor direct[3] = {weight(NULL, 4, rgb), weight(NULL, 4, k5), weight(NULL, 4, k1)};
    for (int i = 0; i < 3; i++)
        cr_assert(!dalle_cpu_conv_winograd(&direct[i]), "weight %d takes the direct form", i);
}

/* conv2d_up2x reads the upsampled taps by index: the same bits as upsampling first, on both
 * forms (Cout 24: Winograd, Cout 5: direct). */
Test(cpu_conv, conv2d_up2x_equals_upsample_then_conv2d) {
    const int B = 2, H = 12, W = 10, Cin = 40, couts[2] = {24, 5};
    for (int ci = 0; ci < 2; ci++) {
        const int Cout = couts[ci];
        const size_t nx = (size_t)B * (H / 2) * (W / 2) * Cin, ny = (size_t)B * H * W * Cout;
        float *x = random_buf(nx, 1.0f, 0.1f), *up = random_buf(4 * nx, 1.0f, 0);
        float *wd = random_buf((size_t)Cout * 9 * Cin, 0.5f, 0), *bd = random_buf(Cout, 1, 0);
        float *y1 = random_buf(ny, 1, 0), *y2 = random_buf(ny, 1, 0);
        const int64_t ws[4] = {Cout, 3, 3, Cin}, bsh[1] = {Cout};
        dalle_tensor w = weight(wd, 4, ws), b = weight(bd, 1, bsh);
        be->ops->conv2d_up2x(be, y1, x, &w, &b, B, H, W, Cin, Cout, 3);
        be->ops->upsample2x(be, up, x, B, H / 2, W / 2, Cin);
        be->ops->conv2d(be, y2, up, &w, &b, B, H, W, Cin, Cout, 3);
        cr_assert(memcmp(y1, y2, ny * sizeof *y1) == 0, "Cout %d: up2x differs", Cout);
        float *bufs[] = {x, up, wd, bd, y1, y2};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            be->ops->free(be, bufs[i]);
    }
}

/* Many GEMM row blocks, some crossing from one image into the next. */
Test(cpu_conv, conv2d_rows_cross_images) {
    const conv_case c = {2, 20, 64, 253, 16, 3, 1};
    run_conv(&c);
}

/* Each image of a batch of 3 has the same bits as that image convolved alone, on the
 * plain, upsampling and GroupNorm-fused convolutions (a VQGAN decode's images do not depend
 * on what is decoded beside them). */
Test(cpu_conv, images_alone_equal_batched) {
    const int B = 3, H = 10, W = 14, Cin = 32, Cout = 24, k = 3;
    const size_t img = (size_t)H * W * Cin, out = (size_t)H * W * Cout;
    float *x = random_buf(B * img, 1.0f, 0.2f),
          *wd = random_buf((size_t)Cout * k * k * Cin, 0.5f, 0);
    float *bd = random_buf(Cout, 1.0f, 0), *g = random_buf(Cin, 0.2f, 1.0f),
          *bt = random_buf(Cin, 0.2f, 0);
    float *yb = random_buf(B * out, 1, 0), *y1 = random_buf(out, 1, 0);
    const int64_t ws[4] = {Cout, k, k, Cin}, bsh[1] = {Cout}, gs[1] = {Cin};
    dalle_tensor w = weight(wd, 4, ws), b = weight(bd, 1, bsh), gt = weight(g, 1, gs),
                 btt = weight(bt, 1, gs);
    for (int op = 0; op < 3; op++) {
        const size_t in_img = op == 1 ? img / 4 : img; /* up2x reads [H/2, W/2] images */
        if (op == 0)
            be->ops->conv2d(be, yb, x, &w, &b, B, H, W, Cin, Cout, k);
        else if (op == 1)
            be->ops->conv2d_up2x(be, yb, x, &w, &b, B, H, W, Cin, Cout, k);
        else
            be->ops->conv2d_gn(be, yb, x, &gt, &btt, 8, 1e-6f, 1, &w, &b, B, H, W, Cin, Cout, k);
        for (int i = 0; i < B; i++) {
            const float *xi = x + i * in_img;
            if (op == 0)
                be->ops->conv2d(be, y1, xi, &w, &b, 1, H, W, Cin, Cout, k);
            else if (op == 1)
                be->ops->conv2d_up2x(be, y1, xi, &w, &b, 1, H, W, Cin, Cout, k);
            else
                be->ops->conv2d_gn(be, y1, xi, &gt, &btt, 8, 1e-6f, 1, &w, &b, 1, H, W, Cin, Cout,
                                   k);
            cr_assert(memcmp(y1, yb + i * out, out * sizeof *y1) == 0,
                      "op %d image %d differs alone", op, i);
        }
    }
    float *bufs[] = {x, wd, bd, g, bt, yb, y1};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        be->ops->free(be, bufs[i]);
}

/* ---- group norm ------------------------------------------------------------------------ */

typedef struct {
    int B, HW, C, G, swish;
    float offset; /* added to every input: checks that the variance is taken centred */
} gn_case;

static void gn_ref(double *y, const float *x, const float *g, const float *b, const gn_case *c,
                   double eps) {
    const int cg = c->C / c->G;
    for (int i = 0; i < c->B; i++)
        for (int grp = 0; grp < c->G; grp++) {
            double s = 0, ss = 0;
            const size_t n = (size_t)c->HW * cg;
            for (int r = 0; r < c->HW; r++)
                for (int ch = grp * cg; ch < (grp + 1) * cg; ch++)
                    s += x[((size_t)i * c->HW + r) * c->C + ch];
            const double mean = s / n;
            for (int r = 0; r < c->HW; r++)
                for (int ch = grp * cg; ch < (grp + 1) * cg; ch++) {
                    const double d = x[((size_t)i * c->HW + r) * c->C + ch] - mean;
                    ss += d * d;
                }
            const double rstd = 1.0 / sqrt(ss / n + eps);
            for (int r = 0; r < c->HW; r++)
                for (int ch = grp * cg; ch < (grp + 1) * cg; ch++) {
                    const size_t at = ((size_t)i * c->HW + r) * c->C + ch;
                    double t = (x[at] - mean) * rstd * g[ch] + b[ch];
                    if (c->swish)
                        t = t / (1.0 + exp(-t));
                    y[at] = t;
                }
        }
}

static void run_gn(const gn_case *c, int in_place) {
    const size_t n = (size_t)c->B * c->HW * c->C;
    const float eps = 1e-6f;
    float *x = random_buf(n, 2.0f, c->offset);
    float *g = random_buf((size_t)c->C, 0.5f, 1.0f), *b = random_buf((size_t)c->C, 0.5f, 0.0f);
    float *y = in_place ? x : random_buf(n, 100.0f, 0.0f);
    double *ref = malloc(n * sizeof *ref);
    cr_assert_not_null(ref);
    const int64_t cs[1] = {c->C};
    dalle_tensor gt = weight(g, 1, cs), bt = weight(b, 1, cs);
    gn_ref(ref, x, g, b, c, eps);
    be->ops->group_norm(be, y, x, &gt, &bt, c->B, c->HW, c->C, c->G, eps, c->swish);
    const double e = rel_err(y, ref, n);
    printf("group_norm B%d HW %d C %d G %d swish %d offset %g%s: max rel err %.3g\n", c->B, c->HW,
           c->C, c->G, c->swish, c->offset, in_place ? " (in place)" : "", e);
    cr_expect(e <= TOL, "group_norm B%d HW %d C %d G %d swish %d: max rel err %g > %g", c->B, c->HW,
              c->C, c->G, c->swish, e, TOL);
    free(ref);
    if (!in_place)
        be->ops->free(be, y);
    be->ops->free(be, x);
    be->ops->free(be, g);
    be->ops->free(be, b);
}

Test(cpu_conv, group_norm_plain) {
    const gn_case cases[] = {
        {2, 15, 12, 3, 0, 0},
        {1, 7, 12, 12, 0, 0},
        {1, 9, 10, 1, 0, 0},
        {2, 1024, 64, 32, 0, 0.5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_gn(&cases[i], 0);
}

Test(cpu_conv, group_norm_swish) {
    const gn_case cases[] = {
        {2, 15, 12, 3, 1, 0},
        {3, 33, 96, 32, 1, 0},
        {1, 2048, 48, 4, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_gn(&cases[i], 0);
}

Test(cpu_conv, group_norm_in_place_and_offset) {
    const gn_case a = {2, 50, 32, 8, 1, 0}, b = {1, 600, 64, 16, 0, 1000.0f};
    run_gn(&a, 1);
    run_gn(&b, 0);
}

/* ---- upsample ------------------------------------------------------------------------- */

static void run_upsample(int B, int H, int W, int C) {
    const size_t n = (size_t)B * H * W * C;
    float *x = random_buf(n, 1.0f, 0.0f), *y = random_buf(4 * n, 1.0f, 0.0f);
    be->ops->upsample2x(be, y, x, B, H, W, C);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < 2 * H; h++)
            for (int w = 0; w < 2 * W; w++)
                for (int c = 0; c < C; c++) {
                    const float got = y[(((size_t)b * 2 * H + h) * 2 * W + w) * C + c];
                    const float want = x[(((size_t)b * H + h / 2) * W + w / 2) * C + c];
                    cr_assert_eq(got, want, "upsample2x B%d %dx%dx%d at (%d,%d,%d,%d)", B, H, W, C,
                                 b, h, w, c);
                }
    be->ops->free(be, x);
    be->ops->free(be, y);
}

Test(cpu_conv, upsample2x_exact) {
    run_upsample(2, 3, 5, 7);
    run_upsample(1, 1, 1, 1);
    run_upsample(3, 16, 16, 64);
}
