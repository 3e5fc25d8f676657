/* test_vqgan_golden.c — the VQGAN decoder against taming-transformers on the tiny random
 * model (fixtures: models/tiny/vqgan.safetensors from tools/reference/make_tiny_vqgan.py,
 * tests/golden/vqgan/ from tools/reference/gen_vqgan_golden.py), plus its input and config
 * errors.
 *
 * Bars: float output before clipping, max abs error ≤ 1e-4; uint8 pixels after
 * clip·255 truncation, ≥ 99.9 % identical and none off by more than 1. The 3 golden grids
 * are decoded as one batch and one by one; the pixel rule (clip, ×255, truncate; NaN → 0)
 * is checked on edge values.
 * Optional: with DALLE_VQGAN_MINDALLE_DIR=DIR (files from gen_vqgan_golden.py --min-dalle
 * DIR), the same bars against min-dalle's full-size VQGanDetokenizer (ε 1e-5), and its time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalle.h"
#include "kernels/ops.h"
#include "model/vqgan.h"
#include "model_loader/model_config.h"
#include "tests/helpers.h"

#define MODEL_DIR   "models/tiny"
#define GOLDEN      "tests/golden/vqgan/tiny_golden.safetensors"
#define N_GRIDS     3
#define FLOAT_TOL   1e-4
#define U8_MIN_SAME 0.999

/* ---- shared comparison --------------------------------------------------------------- */

typedef struct {
    float *codes, *image, *u8; // golden: [G, L·L], [G, R, R, O], [G, R, R, O]
    int64_t n_codes, n_pixels;
} golden;

static void golden_read(golden *g, const char *path) {
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, path, &err), DALLE_OK, "%s", err.msg);
    int64_t n;
    g->codes = golden_tensor(&st, "codes", &g->n_codes);
    g->image = golden_tensor(&st, "image_f32", &g->n_pixels);
    g->u8 = golden_tensor(&st, "image_u8", &n);
    cr_assert_eq(n, g->n_pixels);
    dalle_safetensors_close(&st);
}

static void golden_free(golden *g) {
    free(g->codes);
    free(g->image);
    free(g->u8);
}

/* Decode images [first, first + B) of the golden set in one call and hold them to the bars. */
static void check_decode(const dalle_vqgan *m, dalle_vqgan_work *w, const golden *g, int first,
                         int B, const char *what) {
    const int N = m->hp.latent * m->hp.latent;
    const size_t per = (size_t)m->hp.resolution * m->hp.resolution * m->hp.out_ch;
    const size_t n = (size_t)B * per;
    int32_t *codes = malloc((size_t)B * N * sizeof *codes);
    float *ours = malloc(n * sizeof *ours);
    uint8_t *px = malloc(n);
    cr_assert(codes && ours && px);
    for (int i = 0; i < B * N; i++)
        codes[i] = (int32_t)g->codes[(size_t)first * N + i];
    dalle_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(dalle_vqgan_decode(m, w, codes, B, &err), DALLE_OK, "%s", err.msg);
    w->be->ops->sync(w->be);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    w->be->ops->to_host(w->be, ours, w->image, n * sizeof(float));
    dalle_vqgan_read_u8(m, w, B, px);

    const float *ref = g->image + (size_t)first * per, *ref8 = g->u8 + (size_t)first * per;
    double max_abs = 0, max_ref = 0;
    size_t same = 0, off_by_1 = 0, worse = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= max_abs))
            max_abs = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
        const int du = abs((int)px[i] - (int)ref8[i]);
        same += du == 0;
        off_by_1 += du == 1;
        worse += du > 1;
    }
    const double frac = (double)same / n;
    printf("vqgan %s: float max abs error %.3g (max |ref| %.3g, rel %.3g); uint8 %zu/%zu "
           "identical (%.4f %%), %zu off by 1, %zu off by more; decode %.1f ms\n",
           what, max_abs, max_ref, max_abs / max_ref, same, n, 100.0 * frac, off_by_1, worse,
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    cr_expect(max_abs <= FLOAT_TOL, "%s: float max abs error %g > %g", what, max_abs, FLOAT_TOL);
    cr_expect(frac >= U8_MIN_SAME, "%s: only %.4f %% of the uint8 pixels identical", what,
              100.0 * frac);
    cr_expect(worse == 0, "%s: %zu uint8 pixels off by more than 1", what, worse);
    free(codes);
    free(ours);
    free(px);
}

/* ---- tiny model against taming-transformers --------------------------------------------- */

static dalle_model_config cfg;
static dalle_backend *be;
static dalle_vqgan vq;
static golden gold;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, MODEL_DIR, &err), DALLE_OK, "%s", err.msg);
    cr_assert_not_null(cfg.vqgan_json, MODEL_DIR "/config.json has no vqgan section");
    be = dalle_backend_cpu_new(0);
    cr_assert_not_null(be);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MODEL_DIR, cfg.vqgan_file);
    cr_assert_eq(dalle_vqgan_load(&vq, be, cfg.vqgan_json, MODEL_DIR "/config.json", path, &err),
                 DALLE_OK, "%s", err.msg);
    golden_read(&gold, GOLDEN);
}

static void teardown(void) {
    golden_free(&gold);
    dalle_vqgan_free(&vq);
    be->ops->destroy(be);
    dalle_model_config_free(&cfg);
}

TestSuite(vqgan_golden, .init = setup, .fini = teardown, .timeout = 120);

Test(vqgan_golden, sizes_match_the_text_side) {
    const dalle_vqgan_hparams *hp = &vq.hp;
    cr_assert_eq(hp->latent * hp->latent, cfg.bart.image_length, "one code per decoder position");
    cr_assert_geq(hp->codebook_size, cfg.bart.image_vocab_size, "every sampled code decodes");
    cr_assert_eq(gold.n_codes, (int64_t)N_GRIDS * cfg.bart.image_length);
    cr_assert_eq(gold.n_pixels, (int64_t)N_GRIDS * hp->resolution * hp->resolution * hp->out_ch);
}

Test(vqgan_golden, batch_of_three) {
    dalle_vqgan_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_vqgan_work_new(&w, &vq, be, N_GRIDS, &err), DALLE_OK, "%s", err.msg);
    check_decode(&vq, &w, &gold, 0, N_GRIDS, "tiny, batch of 3");
    dalle_vqgan_work_free(&w);
}

Test(vqgan_golden, one_at_a_time) {
    dalle_vqgan_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_vqgan_work_new(&w, &vq, be, N_GRIDS, &err), DALLE_OK, "%s", err.msg);
    const char *names[N_GRIDS] = {"tiny, grid 0 alone", "tiny, grid 1 alone", "tiny, grid 2 alone"};
    for (int i = 0; i < N_GRIDS; i++)
        check_decode(&vq, &w, &gold, i, 1, names[i]);
    dalle_vqgan_work_free(&w);
}

Test(vqgan_golden, out_of_range_codes_are_errors) {
    dalle_vqgan_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_vqgan_work_new(&w, &vq, be, 2, &err), DALLE_OK, "%s", err.msg);
    const int N = vq.hp.latent * vq.hp.latent, V = vq.hp.codebook_size;
    int32_t *codes = calloc((size_t)2 * N, sizeof *codes);
    cr_assert_not_null(codes);
    const struct {
        int at;
        int32_t code;
        const char *want;
    } bad[] = {{N + 5, V, "image 1: code 16384 at position 5 is outside [0, 16384)"},
               {0, -1, "image 0: code -1 at position 0"},
               {2 * N - 1, INT32_MAX, "code 2147483647"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        codes[bad[i].at] = bad[i].code;
        memset(&err, 0, sizeof err);
        cr_assert_eq(dalle_vqgan_decode(&vq, &w, codes, 2, &err), DALLE_ERR_INVALID_ARG);
        printf("bad code → %s\n", err.msg);
        cr_expect(strstr(err.msg, bad[i].want), "message '%s' lacks '%s'", err.msg, bad[i].want);
        codes[bad[i].at] = 0;
    }
    codes[0] = V - 1;
    cr_assert_eq(dalle_vqgan_decode(&vq, &w, codes, 2, &err), DALLE_OK, "%s", err.msg);
    free(codes);
    dalle_vqgan_work_free(&w);
}

/* The fused ops (conv2d_gn, conv2d_up2x, to_rgb8) against the unfused sequence the decoder
 * falls back to on a backend without them: the same floats and bytes bit for bit (the CPU
 * backend's fused ops are that sequence); w->rgb holds the bytes in backend memory either
 * way; a NaN or ±inf in the output is found and named by image on both paths. */
Test(vqgan_golden, fused_ops_match_the_unfused_sequence) {
    dalle_backend_ops unfused_ops = *be->ops;
    unfused_ops.conv2d_gn = NULL;
    unfused_ops.conv2d_up2x = NULL;
    unfused_ops.to_rgb8 = NULL;
    dalle_backend unfused = {&unfused_ops, be->impl};
    dalle_backend *bes[2] = {be, &unfused};
    const int N = vq.hp.latent * vq.hp.latent, B = 2;
    const size_t per = (size_t)vq.hp.resolution * vq.hp.resolution * vq.hp.out_ch, n = B * per;
    int32_t *codes = malloc((size_t)B * N * sizeof *codes);
    float *f[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    uint8_t *px[2] = {malloc(n), malloc(n)}, *dev = malloc(n);
    cr_assert(codes && f[0] && f[1] && px[0] && px[1] && dev);
    for (int i = 0; i < B * N; i++)
        codes[i] = (int32_t)gold.codes[i];
    dalle_error err = {0};
    for (int k = 0; k < 2; k++) {
        dalle_vqgan_work w;
        cr_assert_eq(dalle_vqgan_work_new(&w, &vq, bes[k], B, &err), DALLE_OK, "%s", err.msg);
        cr_assert_eq(dalle_vqgan_decode(&vq, &w, codes, B, &err), DALLE_OK, "%s", err.msg);
        bes[k]->ops->to_host(bes[k], f[k], w.image, n * sizeof(float));
        cr_expect_eq(dalle_vqgan_read_u8(&vq, &w, B, px[k]), -1);
        bes[k]->ops->to_host(bes[k], dev, w.rgb, n);
        cr_expect(!memcmp(dev, px[k], n), "%s: w->rgb differs from the bytes read",
                  k ? "unfused" : "fused");
        float *img = w.image; /* CPU backend memory is host memory */
        img[per + 7] = NAN;
        cr_expect_eq(dalle_vqgan_read_u8(&vq, &w, B, dev), 1, "a NaN in image 1");
        img[per - 1] = INFINITY;
        cr_expect_eq(dalle_vqgan_read_u8(&vq, &w, B, dev), 0, "+inf in image 0");
        img[per + 7] = 0.5f, img[per - 1] = -INFINITY;
        cr_expect_eq(dalle_vqgan_read_u8(&vq, &w, B, dev), 0, "-inf in image 0");
        dalle_vqgan_work_free(&w);
    }
    cr_expect(!memcmp(f[0], f[1], n * sizeof(float)), "fused and unfused floats differ");
    cr_expect(!memcmp(px[0], px[1], n), "fused and unfused pixels differ");
    free(codes), free(f[0]), free(f[1]), free(px[0]), free(px[1]), free(dev);
}

Test(vqgan_pixels, clip_scale_truncate) {
    const float x[] = {-1.0f, 0.0f, 0.5f, 0.999f, 1.0f / 255, 1.0f, 2.0f, NAN, INFINITY, -INFINITY};
    const uint8_t want[] = {0, 0, 127, 254, 1, 255, 255, 0, 255, 0};
    uint8_t got[sizeof x / sizeof *x];
    dalle_vqgan_to_u8(got, x, sizeof x / sizeof *x);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        cr_expect_eq(got[i], want[i], "x = %g: got %d, want %d", x[i], got[i], want[i]);
}

/* ---- config section errors --------------------------------------------------------------- */

#define TINY_BODY                                                                                  \
    "\"embed_dim\": 16, \"z_channels\": 48, \"ch\": 32, \"ch_mult\": [1, 2, 1], "                  \
    "\"num_res_blocks\": 1, \"attn_resolutions\": [16, 32], \"resolution\": 64, "                  \
    "\"out_ch\": 3, \"eps\": 1e-6"

Test(vqgan_config, valid_section_and_derived_sizes) {
    dalle_vqgan_hparams hp;
    dalle_error err = {0};
    cr_assert_eq(dalle_vqgan_hparams_parse(
                     &hp, "{\"codebook_size\": 16384, \"groups\": 32, " TINY_BODY "}", "t", &err),
                 DALLE_OK, "%s", err.msg);
    cr_assert_eq(hp.latent, 16);
    cr_assert_eq(hp.n_levels, 3);
    cr_assert_eq(hp.ch_mult[1], 2);
    cr_assert_eq(hp.n_attn, 2);
    cr_assert_float_eq(hp.eps, 1e-6f, 1e-12);
}

Test(vqgan_config, errors_name_the_key) {
    const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"codebook_size\": 16384, " TINY_BODY "}", "cfg: missing key 'vqgan.groups'"},
        {"{\"codebook_size\": 16384, \"groups\": 24, " TINY_BODY "}",
         "cfg: vqgan.groups: 24 does not divide the 32 channels of level 0 (vqgan.ch 32 × "
         "vqgan.ch_mult[0] 1)"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"colour\": 1, " TINY_BODY "}",
         "cfg: unknown key 'vqgan.colour'"},
        {"{\"codebook_size\": \"16384\", \"groups\": 32, " TINY_BODY "}",
         "cfg: vqgan.codebook_size: expected an integer in [1, 16777216], found \"16384\""},
        {"{\"codebook_size\": 0, \"groups\": 32, " TINY_BODY "}", "vqgan.codebook_size"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [], \"num_res_blocks\": 1, \"attn_resolutions\": [], "
         "\"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.ch_mult: expected an array of 1 to 8 integers, found an array"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2.5], \"num_res_blocks\": 1, \"attn_resolutions\": [], "
         "\"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.ch_mult[1]: expected an integer in [1, 64], found 2.5"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [], "
         "\"resolution\": 62, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.resolution: 62 is not a multiple of 2^(3 levels - 1) = 4"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [16, "
         "24], \"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.attn_resolutions[1]: 24 is not the resolution of a level (64 down to 16"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [16, "
         "16], \"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.attn_resolutions[1]: 16 is listed twice"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [], "
         "\"resolution\": 64, \"out_ch\": 3, \"eps\": 0}",
         "cfg: vqgan.eps: expected a number in (0, 0.1], found 0"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 512, \"ch_mult\": [1, 32], \"num_res_blocks\": 1, \"attn_resolutions\": [], "
         "\"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "cfg: vqgan.ch_mult[1]: vqgan.ch 512 × 32 = 16384 channels, at most 8192 supported"},
        {NULL, "cfg: missing section 'vqgan'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dalle_vqgan_hparams hp;
        dalle_error err = {0};
        cr_expect_eq(dalle_vqgan_hparams_parse(&hp, cases[i].json, "cfg", &err), DALLE_ERR_FORMAT,
                     "case %zu accepted", i);
        printf("config error → %s\n", err.msg);
        cr_expect(strstr(err.msg, cases[i].want), "case %zu: message '%s' lacks '%s'", i, err.msg,
                  cases[i].want);
    }
}

/* A section that parses but does not match the weights file: the loader names the tensor. */
Test(vqgan_config, weights_that_do_not_match) {
    const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 40, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [16, "
         "32], \"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "post_quant_conv.weight"},
        {"{\"codebook_size\": 16384, \"groups\": 32, \"embed_dim\": 16, \"z_channels\": 48, "
         "\"ch\": 32, \"ch_mult\": [1, 2, 1], \"num_res_blocks\": 1, \"attn_resolutions\": [16], "
         "\"resolution\": 64, \"out_ch\": 3, \"eps\": 1e-6}",
         "decoder.up.1.attn.0"},
        {"{\"codebook_size\": 8192, \"groups\": 32, " TINY_BODY "}", "embedding.weight"},
    };
    dalle_backend *cpu = dalle_backend_cpu_new(1);
    cr_assert_not_null(cpu);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dalle_vqgan m;
        dalle_error err = {0};
        cr_expect_eq(
            dalle_vqgan_load(&m, cpu, cases[i].json, "cfg", MODEL_DIR "/vqgan.safetensors", &err),
            DALLE_ERR_FORMAT, "case %zu accepted", i);
        printf("weights mismatch → %s\n", err.msg);
        cr_expect(strstr(err.msg, cases[i].want), "case %zu: message '%s' lacks '%s'", i, err.msg,
                  cases[i].want);
    }
    cpu->ops->destroy(cpu);
}

/* ---- optional: min-dalle's full-size detokenizer ------------------------------------------ */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

Test(vqgan_mindalle, full_size_detokenizer, .timeout = 600) {
    const char *dir = getenv("DALLE_VQGAN_MINDALLE_DIR");
    if (!dir || !*dir)
        cr_skip_test("set DALLE_VQGAN_MINDALLE_DIR (tools/reference/gen_vqgan_golden.py "
                     "--min-dalle DIR) to run");
    char path[1024];
    snprintf(path, sizeof path, "%s/vqgan.json", dir);
    char *section = read_text(path);
    dalle_backend *cpu = dalle_backend_cpu_new(0);
    cr_assert_not_null(cpu);
    dalle_vqgan m;
    dalle_vqgan_work w;
    dalle_error err = {0};
    snprintf(path, sizeof path, "%s/vqgan.safetensors", dir);
    cr_assert_eq(dalle_vqgan_load(&m, cpu, section, "vqgan.json", path, &err), DALLE_OK, "%s",
                 err.msg);
    cr_assert_eq(dalle_vqgan_work_new(&w, &m, cpu, 1, &err), DALLE_OK, "%s", err.msg);
    golden g;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    golden_read(&g, path);
    check_decode(&m, &w, &g, 0, 1, "min-dalle full size (eps 1e-5)");
    golden_free(&g);
    dalle_vqgan_work_free(&w);
    dalle_vqgan_free(&m);
    cpu->ops->destroy(cpu);
    free(section);
}
