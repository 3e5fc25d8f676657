/* test_clip_golden.c — CLIP on the tiny random model (models/tiny/clip.safetensors, a HF
 * CLIPModel file read directly) against transformers' CLIPModel in fp32 and its
 * CLIPImageProcessor (PIL backend). Fixtures: tests/golden/clip/, made by
 * tools/reference/gen_clip_golden.py: six 256×256 images, three prompts' token ids (open_clip's
 * tokenizer, real vocabulary).
 * The image path is ours end to end: uint8 images → image_prep → vision tower.
 * Bars: pixel values identical; image and text embeddings, before and after L2
 * normalisation, and the logits within max relative error 1e-4 (max|ours − ref| / max|ref|);
 * the ranking of the six images identical for every prompt. Also: config and weight-file
 * errors give clear messages.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/clip.h"
#include "model/image_prep.h"
#include "model_loader/model_config.h"
#include "tests/helpers.h"

#define MODEL_DIR "models/tiny"
#define GOLDEN    "tests/golden/clip/clip_golden.safetensors"
#define IMAGES    "tests/golden/clip/images.safetensors"
#define TOL       1e-4
#define N_IMAGES  6
#define N_PROMPTS 3

static dalle_model_config cfg;
static dalle_clip_hparams hp;
static dalle_backend *be;
static dalle_clip clip;
static dalle_safetensors gold, imgs;
static char weights_path[512];

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, MODEL_DIR, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_clip_hparams_parse(&hp, cfg.clip_json, "config.json", &err), DALLE_OK, "%s",
                 err.msg);
    cr_assert(cfg.clip_file[0], "config.json names no CLIP file");
    snprintf(weights_path, sizeof weights_path, "%s/%s", MODEL_DIR, cfg.clip_file);
    be = dalle_backend_cpu_new(0);
    cr_assert_not_null(be);
    cr_assert_eq(dalle_clip_load(&clip, be, &hp, weights_path, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_open(&gold, GOLDEN, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_open(&imgs, IMAGES, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_safetensors_close(&gold);
    dalle_safetensors_close(&imgs);
    dalle_clip_free(&clip);
    be->ops->destroy(be);
    dalle_model_config_free(&cfg);
}

TestSuite(clip_golden, .init = setup, .fini = teardown, .timeout = 300);

static void l2_normalize(float *v, int rows, int E) {
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int e = 0; e < E; e++)
            ss += (double)v[r * E + e] * v[r * E + e];
        const double inv = 1.0 / sqrt(ss);
        for (int e = 0; e < E; e++)
            v[r * E + e] = (float)(v[r * E + e] * inv);
    }
}

/* Compare `ours` [n] with golden `name` (raw) and, normalised per row of E, with `norm_name`. */
static void expect_embeds(const char *what, float *ours, const char *name, const char *norm_name,
                          int rows, int E) {
    int64_t n;
    float *ref = golden_tensor(&gold, name, &n);
    cr_assert_eq(n, (int64_t)rows * E, "%s: %lld values, expected %d", name, (long long)n,
                 rows * E);
    double e = max_rel_err(ours, ref, (size_t)n);
    printf("%-16s %d×%d: max relative error %.3g\n", what, rows, E, e);
    cr_expect(e <= TOL, "%s: max relative error %g > %g", what, e, TOL);
    free(ref);
    ref = golden_tensor(&gold, norm_name, &n);
    l2_normalize(ours, rows, E);
    e = max_rel_err(ours, ref, (size_t)n);
    printf("%-16s normalised: max relative error %.3g\n", what, e);
    cr_expect(e <= TOL, "%s normalised: max relative error %g > %g", what, e, TOL);
    free(ref);
}

/* Our pixels for the six images (uint8 fixture → image_prep), checked against HF's. */
static float *our_pixels(void) {
    const dalle_st_tensor *t = dalle_safetensors_find(&imgs, "images");
    cr_assert_not_null(t);
    const int H = (int)t->shape[1], W = (int)t->shape[2], S = hp.image_size;
    int64_t n;
    float *f = golden_tensor(&imgs, "images", &n);
    uint8_t *u8 = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        u8[i] = (uint8_t)f[i];
    dalle_image_prep prep;
    dalle_error err = {0};
    cr_assert_eq(dalle_image_prep_init(&prep, W, H, S, &err), DALLE_OK, "%s", err.msg);
    float *px = malloc(sizeof(float) * N_IMAGES * S * S * 3);
    dalle_image_prep_run(&prep, u8, N_IMAGES, px);
    dalle_image_prep_free(&prep);
    float *ref = golden_tensor(&gold, "pixel_values", &n);
    cr_assert_eq(n, (int64_t)N_IMAGES * S * S * 3);
    size_t same = 0;
    double max_diff = 0;
    for (int64_t i = 0; i < n; i++) {
        same += px[i] == ref[i];
        if (fabs(px[i] - ref[i]) > max_diff)
            max_diff = fabs(px[i] - ref[i]);
    }
    printf("pixel values vs CLIPImageProcessor (PIL): %zu/%lld identical (%.4f%%), max abs diff "
           "%.3g\n",
           same, (long long)n, 100.0 * same / n, max_diff);
    cr_expect_eq(same, (size_t)n, "pixel values differ from PIL");
    free(ref);
    free(f);
    free(u8);
    return px;
}

static void prompt_ids(int p, int32_t *ids) {
    int64_t n;
    float *f = golden_tensor(&gold, "input_ids", &n);
    const int T = hp.context_length;
    cr_assert_eq(n, (int64_t)N_PROMPTS * T);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)f[p * T + t];
    free(f);
}

Test(clip_golden, embeddings_scores_ranking) {
    const int E = hp.embed_dim;
    dalle_clip_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_work_new(&w, &clip, be, N_IMAGES, &err), DALLE_OK, "%s", err.msg);
    float *px = our_pixels();
    float img[N_IMAGES * 512], txt[N_PROMPTS * 512];
    cr_assert(E <= 512);
    dalle_clip_image_embed(&clip, &w, px, N_IMAGES, img);
    float img_raw[N_IMAGES * 512];
    memcpy(img_raw, img, sizeof(float) * N_IMAGES * E);
    expect_embeds("image embeds", img, "image_embeds_raw", "image_embeds", N_IMAGES, E);
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[4096];
        prompt_ids(p, ids);
        cr_assert_eq(dalle_clip_text_embed(&clip, &w, ids, txt + p * E, &err), DALLE_OK, "%s",
                     err.msg);
    }
    float txt_raw[N_PROMPTS * 512];
    memcpy(txt_raw, txt, sizeof(float) * N_PROMPTS * E);
    expect_embeds("text embeds", txt, "text_embeds_raw", "text_embeds", N_PROMPTS, E);

    int64_t n;
    float *lpi = golden_tensor(&gold, "logits_per_image", &n); // [images, prompts]
    float *rank = golden_tensor(&gold, "ranking", &n);         // [prompts, images]
    int rank_diff = 0;
    for (int p = 0; p < N_PROMPTS; p++) {
        float logits[N_IMAGES], ref[N_IMAGES];
        int32_t order[N_IMAGES];
        dalle_clip_scores(&clip, img_raw, N_IMAGES, txt_raw + p * E, logits, order);
        for (int i = 0; i < N_IMAGES; i++)
            ref[i] = lpi[i * N_PROMPTS + p];
        double e = max_rel_err(logits, ref, N_IMAGES);
        int same = 1;
        for (int i = 0; i < N_IMAGES; i++)
            same &= order[i] == (int32_t)rank[p * N_IMAGES + i];
        rank_diff += !same;
        printf("prompt %d: logits max relative error %.3g; ranking %d %d %d %d %d %d (%s)\n", p, e,
               order[0], order[1], order[2], order[3], order[4], order[5],
               same ? "identical" : "DIFFERENT");
        cr_expect(e <= TOL, "prompt %d: logits max relative error %g", p, e);
    }
    cr_expect_eq(rank_diff, 0, "%d of %d prompts rank the images differently", rank_diff,
                 N_PROMPTS);
    free(lpi);
    free(rank);
    free(px);
    dalle_clip_work_free(&w);
}

/* An image's embedding does not depend on the batch it is in (the ranking of a request's
 * images must not depend on the other requests). */
Test(clip_golden, batch_independent) {
    const int E = hp.embed_dim, S = hp.image_size;
    dalle_clip_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_work_new(&w, &clip, be, N_IMAGES, &err), DALLE_OK, "%s", err.msg);
    float *px = golden_tensor(&gold, "pixel_values", NULL);
    float all[N_IMAGES * 512], one[512];
    dalle_clip_image_embed(&clip, &w, px, N_IMAGES, all);
    double worst = 0;
    for (int b = 0; b < N_IMAGES; b++) {
        dalle_clip_image_embed(&clip, &w, px + (size_t)b * S * S * 3, 1, one);
        double e = max_rel_err(one, all + b * E, (size_t)E);
        if (e > worst)
            worst = e;
    }
    printf("image embeds, batch of 1 vs batch of %d: max relative error %.3g\n", N_IMAGES, worst);
    cr_expect(worst <= 1e-6, "batch dependence %g", worst);
    free(px);
    dalle_clip_work_free(&w);
}

Test(clip_golden, scores_ties_and_scale) {
    const int E = hp.embed_dim;
    float img[3 * 512], txt[512], logits[3];
    int32_t order[3];
    for (int e = 0; e < E; e++) {
        txt[e] = e == 0;
        img[e] = e == 1;              // cosine 0
        img[E + e] = 2.0f * (e == 0); // cosine 1
        img[2 * E + e] = e == 1;      // cosine 0: ties with image 0
    }
    dalle_clip_scores(&clip, img, 3, txt, logits, order);
    cr_expect_float_eq(logits[1], clip.score_scale, 1e-6);
    cr_expect(order[0] == 1 && order[1] == 0 && order[2] == 2, "order %d %d %d", order[0], order[1],
              order[2]);
    printf("exp(logit_scale) = %.6g\n", clip.score_scale);
}

/* The ranking rule alone (the server ranks the parts of a split request with it): highest
 * first, equal scores by index, negative and repeated values included. */
Test(clip_golden, rank_order_rule) {
    const float scores[7] = {0.5f, 2.0f, -1.0f, 2.0f, 0.5f, 3.0f, -1.0f};
    const int32_t want[7] = {5, 1, 3, 0, 4, 2, 6};
    int32_t order[7];
    dalle_rank_order(scores, 7, order);
    for (int k = 0; k < 7; k++)
        cr_expect_eq(order[k], want[k], "order[%d] = %d, want %d", k, order[k], want[k]);
    dalle_rank_order(scores, 0, order); // nothing to rank: writes nothing
}

Test(clip_golden, bad_text_ids) {
    dalle_clip_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_work_new(&w, &clip, be, 1, &err), DALLE_OK, "%s", err.msg);
    int32_t ids[4096] = {49406, 320, 49407};
    float emb[512];
    ids[5] = hp.vocab_size;
    cr_expect_eq(dalle_clip_text_embed(&clip, &w, ids, emb, &err), DALLE_ERR_INVALID_ARG);
    cr_expect(strstr(err.msg, "id 49408 at position 5 is outside the vocabulary"), "%s", err.msg);
    dalle_clip_work_free(&w);
}

/* ---- config and weight-file errors ------------------------------------------------ */

#define VISION                                                                                     \
    "\"vision\": {\"image_size\": 224, \"patch_size\": 32, \"width\": 64, \"layers\": 2, "         \
    "\"heads\": 2, \"mlp_dim\": 128}"
#define TEXT                                                                                       \
    "\"text\": {\"context_length\": 77, \"vocab_size\": 49408, \"width\": 32, "                    \
    "\"layers\": 2, \"heads\": 2, \"mlp_dim\": 64}"

static void expect_config_error(const char *json, const char *want) {
    dalle_clip_hparams h;
    dalle_error err = {0};
    cr_expect_eq(dalle_clip_hparams_parse(&h, json, "config.json", &err), DALLE_ERR_FORMAT,
                 "accepted: %s", json ? json : "(null)");
    cr_expect(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

Test(clip_golden, config_errors) {
    expect_config_error(NULL, "config.json: missing section 'clip'");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, \"colour\": 1, " VISION
                        ", " TEXT "}",
                        "config.json: unknown key 'clip.colour'");
    expect_config_error("{\"layer_norm_eps\": 1e-5, " VISION ", " TEXT "}",
                        "config.json: missing key 'clip.embed_dim'");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " VISION "}",
                        "missing key 'clip.text'");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " TEXT ", \"vision\": "
                        "{\"image_size\": 224, \"patch_size\": 32, \"width\": 64, \"layers\": 2, "
                        "\"mlp_dim\": 128}}",
                        "missing key 'clip.vision.heads'");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " TEXT ", \"vision\": "
                        "{\"image_size\": 224, \"patch_size\": 32, \"width\": 64.5, \"layers\": 2, "
                        "\"heads\": 2, \"mlp_dim\": 128}}",
                        "clip.vision.width: expected an integer in [1, 16384], found 64.5");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " TEXT ", \"vision\": "
                        "{\"image_size\": 224, \"patch_size\": 30, \"width\": 64, \"layers\": 2, "
                        "\"heads\": 2, \"mlp_dim\": 128}}",
                        "clip.vision.patch_size: 30 does not divide clip.vision.image_size 224");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " VISION ", \"text\": "
                        "{\"context_length\": 77, \"vocab_size\": 49408, \"width\": 32, "
                        "\"layers\": 2, \"heads\": 3, \"mlp_dim\": 64}}",
                        "clip.text.heads: 3 does not divide clip.text.width 32");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 0, " VISION ", " TEXT "}",
                        "clip.layer_norm_eps: expected a number in (0, 0.1], found 0");
    expect_config_error(
        "{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, \"logit_scale\": 4.6, " VISION ", " TEXT "}",
        "clip.logit_scale: not allowed while clip.logit_scale_from_weights is "
        "true");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, "
                        "\"logit_scale_from_weights\": false, " VISION ", " TEXT "}",
                        "missing key 'clip.logit_scale'");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, "
                        "\"logit_scale_from_weights\": 1, " VISION ", " TEXT "}",
                        "clip.logit_scale_from_weights: expected true or false, found 1");
    expect_config_error("{\"embed_dim\": 32, \"embed_dim\": 32, \"layer_norm_eps\": 1e-5, " VISION
                        ", " TEXT "}",
                        "duplicate object key");
    expect_config_error("{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, \"vision\": [], " TEXT "}",
                        "clip.vision: expected an object, found an array");
}

Test(clip_golden, logit_scale_from_config) {
    dalle_clip_hparams h;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_hparams_parse(&h,
                                          "{\"embed_dim\": 32, \"layer_norm_eps\": 1e-5, "
                                          "\"logit_scale_from_weights\": false, \"logit_scale\": "
                                          "4.605170185988092, " VISION ", " TEXT "}",
                                          "config.json", &err),
                 DALLE_OK, "%s", err.msg);
    dalle_clip m;
    cr_assert_eq(dalle_clip_load(&m, be, &h, weights_path, &err), DALLE_OK, "%s", err.msg);
    cr_expect_float_eq(m.score_scale, 100.0f, 1e-4, "scale %g", m.score_scale);
    dalle_clip_free(&m);
}

static void expect_load_error(void (*edit)(dalle_clip_hparams *), const char *want) {
    dalle_clip_hparams h = hp;
    edit(&h);
    dalle_clip m;
    dalle_error err = {0};
    cr_expect_eq(dalle_clip_load(&m, be, &h, weights_path, &err), DALLE_ERR_FORMAT);
    cr_expect(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

static void more_text_layers(dalle_clip_hparams *h) {
    h->text.layers = 3;
}
static void fewer_vision_layers(dalle_clip_hparams *h) {
    h->vision.layers = 1;
}
static void other_embed_dim(dalle_clip_hparams *h) {
    h->embed_dim = 16;
}
static void other_patch(dalle_clip_hparams *h) {
    h->patch_size = 16;
}

Test(clip_golden, weight_file_errors) {
    expect_load_error(more_text_layers,
                      "tensor 'text_model.encoder.layers.2.layer_norm1.weight' (shape [32]) is "
                      "missing");
    expect_load_error(fewer_vision_layers,
                      "tensor 'vision_model.encoder.layers.1.layer_norm1.bias' is not used");
    expect_load_error(other_embed_dim,
                      "tensor 'visual_projection.weight': expected shape [16, 64], found [32, 64]");
    expect_load_error(other_patch, "vision_model.embeddings.patch_embedding.weight");
}
