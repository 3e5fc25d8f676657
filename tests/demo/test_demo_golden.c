/* test_demo_golden.c — the trained demo model (models/demo) through our C code against the
 * peer classes it was trained with: min-dalle's DalleBart (encoder output, every step's
 * logits along the guided greedy path, the greedy codes through the public API), taming's
 * Decoder (float output and uint8 pixels) and transformers' CLIPModel (pixels, embeddings,
 * logits). Fixtures: tests/demo/golden/, made by tools/demo/gen_demo_golden.py from the
 * committed weights. Bars are the P1/P2 ones: max relative error 1e-4 (BART, CLIP),
 * max abs error 1e-4 and ≥ 99.9 % identical uint8 with none off by more than 1 (VQGAN),
 * identical greedy codes, identical CLIP pixels.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"
#include "kernels/ops.h"
#include "model/bart.h"
#include "model/clip.h"
#include "model/image_prep.h"
#include "model/vqgan.h"
#include "model_loader/model_config.h"
#include "tests/helpers.h"

#define MODEL_DIR      "models/demo"
#define GOLDEN         "tests/demo/golden/demo_golden.safetensors"
#define N_PROMPTS      2
#define N_GRIDS        3
#define N_IMAGES       5
#define N_CLIP_PROMPTS 3
#define TOL            1e-4
#define COND_SCALE     4.0f

static dalle_model_config cfg;
static dalle_backend *be;
static dalle_safetensors gold;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, MODEL_DIR, &err), DALLE_OK, "%s", err.msg);
    be = dalle_backend_cpu_new(1);
    cr_assert_not_null(be);
    cr_assert_eq(dalle_safetensors_open(&gold, GOLDEN, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_safetensors_close(&gold);
    be->ops->destroy(be);
    dalle_model_config_free(&cfg);
}

TestSuite(demo_golden, .init = setup, .fini = teardown, .timeout = 300);

/* Encoder output, then teacher-forced decoding along min-dalle's guided greedy path: the
 * guided argmax at every step, all lm_head logits of both branches at the fixture's steps
 * (p{i}.logit_steps: the first 16, every 16th and the last). */
Test(demo_golden, bart_encoder_and_every_logit) {
    const int T = cfg.bart.text_length, C = cfg.bart.d_model, P = cfg.bart.image_length;
    const int L = cfg.bart.lm_head_size, V = cfg.bart.image_vocab_size;
    dalle_bart bart;
    dalle_bart_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_bart_load(&bart, be, &cfg.bart, MODEL_DIR "/encoder.safetensors",
                                 MODEL_DIR "/decoder.safetensors", &err),
                 DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_bart_work_new(&w, &bart, be, 2, 2, 2, &err), DALLE_OK, "%s", err.msg);
    float *enc = malloc(sizeof(float) * 2 * T * C);
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[2 * 4096];
        uint8_t mask[2 * 4096];
        golden_prompt_ids(&gold, &cfg, p, ids, mask);
        dalle_bart_encode(&bart, &w, ids, mask, 2, enc);
        char name[64];
        int64_t n;
        snprintf(name, sizeof name, "p%d.encoder_out", p);
        float *ref = golden_tensor(&gold, name, &n);
        cr_assert_eq(n, 2 * T * C);
        double e = max_rel_err(enc, ref, (size_t)n);
        printf("demo encoder p%d: max relative error %.3g\n", p, e);
        cr_expect(e <= TOL, "encoder p%d: %g", p, e);
        free(ref);

        dalle_bart_cross_kv(&bart, &w, enc, mask, 0);                     // uncond
        dalle_bart_cross_kv(&bart, &w, enc + (size_t)T * C, mask + T, 1); // cond
        snprintf(name, sizeof name, "p%d.greedy_tokens", p);
        float *greedy = golden_tensor(&gold, name, &n);
        cr_assert_eq(n, P);
        snprintf(name, sizeof name, "p%d.logit_steps", p);
        int64_t S;
        float *steps = golden_tensor(&gold, name, &S);
        cr_assert(S > 0 && S <= P);
        float *ref_b[2];
        const char *branch[2] = {"cond", "uncond"};
        for (int b = 0; b < 2; b++) {
            snprintf(name, sizeof name, "p%d.logits_%s", p, branch[b]);
            ref_b[b] = golden_tensor(&gold, name, &n);
            cr_assert_eq(n, S * L);
        }
        double worst = 0;
        int argmax_diff = 0, k = 0;
        for (int t = 0; t < P; t++) {
            const int32_t prev = t == 0 ? cfg.bart.start_token : (int32_t)greedy[t - 1];
            const int32_t tok[2] = {prev, prev}, pos[2] = {t, t}, slot[2] = {0, 1},
                          block[2] = {1, 0};
            dalle_bart_decode_step(&bart, &w, tok, pos, slot, block, 2, L);
            for (int b = 0; k < S && (int)steps[k] == t && b < 2; b++) {
                double e2 = max_rel_err(w.logits + (size_t)b * L, ref_b[b] + (size_t)k * L, L);
                if (e2 > worst)
                    worst = e2;
            }
            k += k < S && (int)steps[k] == t;
            /* guided argmax over the image codes, as the sampler with top_k 1 */
            const float *c = w.logits, *u = w.logits + L;
            int am = 0;
            float best = -INFINITY;
            for (int j = 0; j < V; j++) {
                const float g = u[j] + COND_SCALE * (c[j] - u[j]);
                if (g > best)
                    best = g, am = j;
            }
            argmax_diff += am != (int)greedy[t];
        }
        cr_assert_eq(k, S, "p%d: logit steps not increasing", p);
        printf("demo decoder p%d: guided argmax at %d steps; %d of them × 2 branches × %d logits, "
               "worst max relative error %.3g, guided argmax differences %d\n",
               p, P, k, L, worst, argmax_diff);
        cr_expect(worst <= TOL, "p%d logits: %g", p, worst);
        cr_expect_eq(argmax_diff, 0, "p%d: %d guided argmax differences", p, argmax_diff);
        for (int b = 0; b < 2; b++)
            free(ref_b[b]);
        free(steps);
        free(greedy);
    }
    free(enc);
    dalle_bart_work_free(&w);
    dalle_bart_free(&bart);
}

/* The whole model through the public API: guided greedy codes equal min-dalle's. */
Test(demo_golden, greedy_codes_public_api) {
    expect_greedy_codes(MODEL_DIR, &gold, &cfg, N_PROMPTS, COND_SCALE, 77);
}

Test(demo_golden, vqgan_decoder) {
    dalle_vqgan vq;
    dalle_vqgan_work w;
    dalle_error err = {0};
    cr_assert_not_null(cfg.vqgan_json);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MODEL_DIR, cfg.vqgan_file);
    cr_assert_eq(dalle_vqgan_load(&vq, be, cfg.vqgan_json, MODEL_DIR "/config.json", path, &err),
                 DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_vqgan_work_new(&w, &vq, be, N_GRIDS, &err), DALLE_OK, "%s", err.msg);
    int64_t nc, np;
    float *codesf = golden_tensor(&gold, "vq.codes", &nc);
    float *ref = golden_tensor(&gold, "vq.image_f32", &np);
    float *ref8 = golden_tensor(&gold, "vq.image_u8", NULL);
    const int N = vq.hp.latent * vq.hp.latent;
    cr_assert_eq(nc, (int64_t)N_GRIDS * N);
    cr_assert_eq(np, (int64_t)N_GRIDS * vq.hp.resolution * vq.hp.resolution * vq.hp.out_ch);
    int32_t *codes = malloc(sizeof(int32_t) * nc);
    for (int64_t i = 0; i < nc; i++)
        codes[i] = (int32_t)codesf[i];
    cr_assert_eq(dalle_vqgan_decode(&vq, &w, codes, N_GRIDS, &err), DALLE_OK, "%s", err.msg);
    float *ours = malloc(sizeof(float) * np);
    uint8_t *px = malloc((size_t)np);
    w.be->ops->sync(w.be);
    w.be->ops->to_host(w.be, ours, w.image, (size_t)np * sizeof(float));
    dalle_vqgan_read_u8(&vq, &w, N_GRIDS, px);
    double max_abs = 0, max_ref = 0;
    size_t same = 0, worse = 0;
    for (int64_t i = 0; i < np; i++) {
        const double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= max_abs))
            max_abs = d;
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
        const int du = abs((int)px[i] - (int)ref8[i]);
        same += du == 0;
        worse += du > 1;
    }
    printf("demo vqgan: float max abs error %.3g (max |ref| %.3g); uint8 %zu/%lld identical "
           "(%.4f %%), %zu off by more than 1\n",
           max_abs, max_ref, same, (long long)np, 100.0 * same / np, worse);
    cr_expect(max_abs <= 1e-4, "float max abs error %g", max_abs);
    cr_expect((double)same / np >= 0.999, "uint8 identical %.4f", (double)same / np);
    cr_expect_eq(worse, 0);
    free(codes), free(codesf), free(ref), free(ref8), free(ours), free(px);
    dalle_vqgan_work_free(&w);
    dalle_vqgan_free(&vq);
}

Test(demo_golden, clip_pixels_embeddings_logits) {
    dalle_clip_hparams hp;
    dalle_clip clip;
    dalle_clip_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_hparams_parse(&hp, cfg.clip_json, "config.json", &err), DALLE_OK, "%s",
                 err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MODEL_DIR, cfg.clip_file);
    cr_assert_eq(dalle_clip_load(&clip, be, &hp, path, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_clip_work_new(&w, &clip, be, N_IMAGES, &err), DALLE_OK, "%s", err.msg);
    const int S = hp.image_size, E = hp.embed_dim;
    const dalle_st_tensor *t = dalle_safetensors_find(&gold, "clip.images");
    cr_assert_not_null(t);
    const int H = (int)t->shape[1], W = (int)t->shape[2];
    int64_t n;
    float *f = golden_tensor(&gold, "clip.images", &n);
    uint8_t *u8 = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        u8[i] = (uint8_t)f[i];
    dalle_image_prep prep;
    cr_assert_eq(dalle_image_prep_init(&prep, W, H, S, &err), DALLE_OK, "%s", err.msg);
    float *px = malloc(sizeof(float) * N_IMAGES * S * S * 3);
    dalle_image_prep_run(&prep, u8, N_IMAGES, px);
    dalle_image_prep_free(&prep);
    float *ref_px = golden_tensor(&gold, "clip.pixel_values", &n);
    cr_assert_eq(n, (int64_t)N_IMAGES * S * S * 3);
    size_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += px[i] == ref_px[i];
    printf("demo clip pixels: %zu/%lld identical to CLIPImageProcessorPil\n", same, (long long)n);
    cr_expect_eq(same, (size_t)n);

    float *img = malloc(sizeof(float) * N_IMAGES * E),
          *txt = malloc(sizeof(float) * N_CLIP_PROMPTS * E);
    dalle_clip_image_embed(&clip, &w, px, N_IMAGES, img);
    float *ids_f = golden_tensor(&gold, "clip.input_ids", &n);
    const int Tt = hp.context_length;
    for (int p = 0; p < N_CLIP_PROMPTS; p++) {
        int32_t ids[4096];
        for (int i = 0; i < Tt; i++)
            ids[i] = (int32_t)ids_f[p * Tt + i];
        cr_assert_eq(dalle_clip_text_embed(&clip, &w, ids, txt + p * E, &err), DALLE_OK, "%s",
                     err.msg);
    }
    float *ref_img = golden_tensor(&gold, "clip.image_embeds_raw", &n);
    cr_assert_eq(n, (int64_t)N_IMAGES * E);
    float *ref_txt = golden_tensor(&gold, "clip.text_embeds_raw", &n);
    cr_assert_eq(n, (int64_t)N_CLIP_PROMPTS * E);
    double ei = max_rel_err(img, ref_img, (size_t)N_IMAGES * E);
    double et = max_rel_err(txt, ref_txt, (size_t)N_CLIP_PROMPTS * E);
    float *lpi = golden_tensor(&gold, "clip.logits_per_image", &n);
    double el = 0;
    for (int p = 0; p < N_CLIP_PROMPTS; p++) {
        float logits[N_IMAGES], ref[N_IMAGES];
        int32_t order[N_IMAGES];
        dalle_clip_scores(&clip, img, N_IMAGES, txt + p * E, logits, order);
        for (int i = 0; i < N_IMAGES; i++)
            ref[i] = lpi[i * N_CLIP_PROMPTS + p];
        const double e = max_rel_err(logits, ref, N_IMAGES);
        if (e > el)
            el = e;
    }
    printf("demo clip: image embeds %.3g, text embeds %.3g, logits %.3g (max relative error)\n", ei,
           et, el);
    cr_expect(ei <= TOL && et <= TOL && el <= TOL, "clip errors %g %g %g", ei, et, el);
    free(f), free(u8), free(px), free(ref_px), free(img), free(txt), free(ids_f);
    free(ref_img), free(ref_txt), free(lpi);
    dalle_clip_work_free(&w);
    dalle_clip_free(&clip);
}
