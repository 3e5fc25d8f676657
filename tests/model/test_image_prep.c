/* test_image_prep.c — PIL-exact bicubic resize and CLIP preprocessing against Pillow and
 * transformers' CLIPImageProcessor (PIL backend). Fixtures: tests/golden/clip/, made by
 * tools/reference/gen_clip_golden.py (images.safetensors: plain Image.resize cases and
 * crop-size-64 preprocessing cases; clip_golden.safetensors: the six 256×256 images'
 * pixel_values at 224).
 * Bar: identical bytes after the resize, identical floats after the preprocessing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/image_prep.h"
#include "tests/helpers.h"

#define IMAGES "tests/golden/clip/images.safetensors"
#define GOLDEN "tests/golden/clip/clip_golden.safetensors"

static dalle_safetensors imgs, gold;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&imgs, IMAGES, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_open(&gold, GOLDEN, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_safetensors_close(&imgs);
    dalle_safetensors_close(&gold);
}

TestSuite(image_prep, .init = setup, .fini = teardown, .timeout = 120);

/* A fixture tensor of integers 0…255 as malloc'd uint8; shape copied to *t when given. */
static uint8_t *u8_tensor(const char *name, const dalle_st_tensor **t) {
    const dalle_st_tensor *info = dalle_safetensors_find(&imgs, name);
    cr_assert_not_null(info, "fixture tensor '%s' missing", name);
    int64_t n;
    float *f = golden_tensor(&imgs, name, &n);
    uint8_t *u = malloc((size_t)n);
    cr_assert_not_null(u);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(f[i] >= 0 && f[i] <= 255 && f[i] == (int)f[i], "%s[%lld] = %g", name,
                  (long long)i, f[i]);
        u[i] = (uint8_t)f[i];
    }
    free(f);
    if (t)
        *t = info;
    return u;
}

/* Compare floats exactly; returns the count of equal ones and the max |difference|. */
static size_t count_equal(const float *a, const float *b, size_t n, double *max_diff) {
    size_t same = 0;
    *max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        same += a[i] == b[i];
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= *max_diff))
            *max_diff = d;
    }
    return same;
}

Test(image_prep, pil_resize_cases) {
    const dalle_st_tensor *all;
    uint8_t *images = u8_tensor("images", &all);
    const int64_t iw = all->shape[2], ih = all->shape[1];
    size_t total = 0, total_same = 0;
    int cases = 0, worst = 0;
    for (int i = 0;; i++, cases++) {
        char name[64];
        snprintf(name, sizeof name, "resize%d.out", i);
        if (!dalle_safetensors_find(&imgs, name))
            break;
        const dalle_st_tensor *ot;
        uint8_t *ref = u8_tensor(name, &ot);
        const int oh = (int)ot->shape[0], ow = (int)ot->shape[1], C = (int)ot->shape[2];
        uint8_t *src, *owned = NULL;
        int w, h;
        snprintf(name, sizeof name, "resize%d.src", i);
        if (dalle_safetensors_find(&imgs, name)) {
            const dalle_st_tensor *st;
            src = owned = u8_tensor(name, &st);
            h = (int)st->shape[0];
            w = (int)st->shape[1];
        } else {
            snprintf(name, sizeof name, "resize%d.image", i);
            float *idx = golden_tensor(&imgs, name, NULL);
            src = images + (size_t)idx[0] * ih * iw * 3;
            h = (int)ih;
            w = (int)iw;
            free(idx);
        }
        dalle_bicubic r;
        dalle_error err = {0};
        cr_assert_eq(dalle_bicubic_init(&r, w, h, ow, oh, C, &err), DALLE_OK, "%s", err.msg);
        const size_t n = (size_t)ow * oh * C;
        uint8_t *out = malloc(n);
        dalle_bicubic_run(&r, src, out);
        size_t same = 0;
        int max_diff = 0;
        for (size_t j = 0; j < n; j++) {
            same += out[j] == ref[j];
            int d = abs((int)out[j] - ref[j]);
            if (d > max_diff)
                max_diff = d;
        }
        printf("resize%d %3dx%-3d c%d -> %3dx%-3d: %zu/%zu bytes identical (%.3f%%), max diff %d\n",
               i, w, h, C, ow, oh, same, n, 100.0 * same / n, max_diff);
        cr_expect_eq(same, n, "resize%d: %zu of %zu bytes differ from PIL (max diff %d)", i,
                     n - same, n, max_diff);
        total += n;
        total_same += same;
        if (max_diff > worst)
            worst = max_diff;
        dalle_bicubic_free(&r);
        free(out);
        free(ref);
        free(owned);
    }
    printf("PIL bicubic, %d cases: %zu/%zu bytes identical (%.4f%%), max diff %d\n", cases,
           total_same, total, 100.0 * total_same / total, worst);
    cr_expect(cases >= 12, "only %d resize cases found in %s", cases, IMAGES);
    free(images);
}

/* The six 256×256 images through the 224 preprocessing against CLIPImageProcessor. */
Test(image_prep, clip_pixels_224) {
    const dalle_st_tensor *t;
    uint8_t *images = u8_tensor("images", &t);
    const int B = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
    int64_t n;
    float *ref = golden_tensor(&gold, "pixel_values", &n);
    const int S = 224;
    cr_assert_eq(n, (int64_t)B * S * S * 3);
    dalle_image_prep p;
    dalle_error err = {0};
    cr_assert_eq(dalle_image_prep_init(&p, W, H, S, &err), DALLE_OK, "%s", err.msg);
    float *out = malloc((size_t)n * sizeof *out);
    dalle_image_prep_run(&p, images, B, out);
    double max_diff;
    size_t same = count_equal(out, ref, (size_t)n, &max_diff);
    printf("CLIP preprocessing, %d images %dx%d -> %d: %zu/%lld pixel values identical "
           "(%.4f%%), max abs diff %.3g\n",
           B, W, H, S, same, (long long)n, 100.0 * same / n, max_diff);
    cr_expect_eq(same, (size_t)n, "%lld pixel values differ from CLIPImageProcessor",
                 (long long)(n - (int64_t)same));
    dalle_image_prep_free(&p);
    free(out);
    free(ref);
    free(images);
}

/* dalle_image_prep_plan: the plan the pipeline uploads once per state, run by the backend's
 * clip_prep op, gives dalle_image_prep_run's floats bit for bit — for the VQGAN's 256² →
 * 224 (both axes down), wide and tall sources, an upscale and a source already at the size. */
Test(image_prep, backend_plan_matches_the_host_run) {
    static const int sizes[][3] = {
        {256, 256, 224}, {300, 200, 224}, {230, 1000, 224}, {40, 30, 64}, {64, 64, 64}};
    dalle_backend *be = dalle_backend_cpu_new(1);
    cr_assert_not_null(be);
    dalle_error err = {0};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        const int W = sizes[k][0], H = sizes[k][1], S = sizes[k][2], B = 2;
        const size_t nin = (size_t)B * H * W * 3, nout = (size_t)B * S * S * 3;
        uint8_t *rgb = malloc(nin);
        float *want = malloc(nout * sizeof *want), *got = malloc(nout * sizeof *got);
        cr_assert(rgb && want && got);
        for (size_t i = 0; i < nin; i++)
            rgb[i] = (uint8_t)((i * 2654435761u) >> 13);
        dalle_image_prep p;
        dalle_clip_prep_plan plan;
        void *mem;
        cr_assert_eq(dalle_image_prep_init(&p, W, H, S, &err), DALLE_OK, "%s", err.msg);
        cr_assert_eq(dalle_image_prep_plan(&p, be, &plan, &mem, &err), DALLE_OK, "%s", err.msg);
        dalle_image_prep_run(&p, rgb, B, want);
        memset(got, 0xff, nout * sizeof *got);
        be->ops->clip_prep(be, got, rgb, &plan, B);
        cr_expect(!memcmp(got, want, nout * sizeof *got), "%dx%d -> %d: plan differs", W, H, S);
        be->ops->free(be, mem);
        dalle_image_prep_free(&p);
        free(rgb), free(want), free(got);
    }
    be->ops->destroy(be);
}

/* Non-square sources (resize of the short side, center crop) at crop size 64. */
Test(image_prep, crop_cases) {
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char name[64];
        snprintf(name, sizeof name, "prep%d.src", i);
        if (!dalle_safetensors_find(&imgs, name))
            break;
        const dalle_st_tensor *st;
        uint8_t *src = u8_tensor(name, &st);
        const int h = (int)st->shape[0], w = (int)st->shape[1];
        snprintf(name, sizeof name, "prep%d.pixels", i);
        const dalle_st_tensor *pt = dalle_safetensors_find(&imgs, name);
        cr_assert_not_null(pt);
        const int S = (int)pt->shape[0];
        int64_t n;
        float *ref = golden_tensor(&imgs, name, &n);
        dalle_image_prep p;
        dalle_error err = {0};
        cr_assert_eq(dalle_image_prep_init(&p, w, h, S, &err), DALLE_OK, "%s", err.msg);
        float *out = malloc((size_t)n * sizeof *out);
        dalle_image_prep_run(&p, src, 1, out);
        double max_diff;
        size_t same = count_equal(out, ref, (size_t)n, &max_diff);
        printf("prep%d %3dx%-3d -> %dx%d crop at (%d, %d): %zu/%lld identical, max abs diff "
               "%.3g\n",
               i, w, h, S, S, p.top, p.left, same, (long long)n, max_diff);
        cr_expect_eq(same, (size_t)n, "prep%d: %lld values differ", i,
                     (long long)(n - (int64_t)same));
        dalle_image_prep_free(&p);
        free(out);
        free(ref);
        free(src);
    }
    cr_expect(cases >= 4, "only %d preprocessing cases found", cases);
}

Test(image_prep, bad_sizes) {
    dalle_bicubic r;
    dalle_image_prep p;
    dalle_error err = {0};
    cr_expect_eq(dalle_bicubic_init(&r, 0, 10, 5, 5, 3, &err), DALLE_ERR_INVALID_ARG);
    cr_expect(strstr(err.msg, "sides must be in [1, 16384]"), "%s", err.msg);
    cr_expect_eq(dalle_bicubic_init(&r, 10, 10, 5, 5, 5, &err), DALLE_ERR_INVALID_ARG);
    cr_expect(strstr(err.msg, "5 channels"), "%s", err.msg);
    cr_expect_eq(dalle_image_prep_init(&p, 256, 256, 0, &err), DALLE_ERR_INVALID_ARG);
    cr_expect_eq(dalle_image_prep_init(&p, 1, 16384, 224, &err), DALLE_ERR_INVALID_ARG);
    cr_expect(strstr(err.msg, "long side exceeds"), "%s", err.msg);
}
