/* test_bart_golden.c — the BART encoder, the cached decoder and guided greedy sampling
 * against min-dalle on the tiny random model (fixtures: tests/golden/bart/, made by
 * tools/reference/gen_bart_golden.py). Bar: max relative error 1e-4 per tensor (per step
 * for logits); greedy tokens identical.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dalle.h"
#include "kernels/ops.h"
#include "model/bart.h"
#include "model_loader/model_config.h"
#include "tests/helpers.h"

#define MODEL_DIR "models/tiny"
#define GOLDEN    "tests/golden/bart/tiny_golden.safetensors"
#define N_PROMPTS 2
#define TOL       1e-4

static dalle_model_config cfg;
static dalle_backend *be;
static dalle_bart bart;
static dalle_safetensors gold;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, MODEL_DIR, &err), DALLE_OK, "%s", err.msg);
    be = dalle_backend_cpu_new(0);
    cr_assert_not_null(be);
    cr_assert_eq(dalle_bart_load(&bart, be, &cfg.bart, MODEL_DIR "/encoder.safetensors",
                                 MODEL_DIR "/decoder.safetensors", &err),
                 DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_open(&gold, GOLDEN, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_safetensors_close(&gold);
    dalle_bart_free(&bart);
    be->ops->destroy(be);
    dalle_model_config_free(&cfg);
}

TestSuite(bart_golden, .init = setup, .fini = teardown, .timeout = 300);

Test(bart_golden, encoder_output) {
    const int T = cfg.bart.text_length, C = cfg.bart.d_model;
    dalle_bart_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_bart_work_new(&w, &bart, be, 2, 2, 2, &err), DALLE_OK, "%s", err.msg);
    float *out = malloc(sizeof(float) * 2 * T * C);
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[2 * 4096];
        uint8_t mask[2 * 4096];
        golden_prompt_ids(&gold, &cfg, p, ids, mask);
        dalle_bart_encode(&bart, &w, ids, mask, 2, out);
        char name[64];
        snprintf(name, sizeof name, "p%d.encoder_out", p);
        int64_t n;
        float *ref = golden_tensor(&gold, name, &n);
        cr_assert_eq(n, 2 * T * C);
        double e = max_rel_err(out, ref, (size_t)n);
        printf("encoder p%d: max relative error %.3g\n", p, e);
        cr_expect(e <= TOL, "encoder output p%d: max relative error %g > %g", p, e, TOL);
        free(ref);
    }
    free(out);
    dalle_bart_work_free(&w);
}

/* Teacher-forced decoding: rows 0 = cond (slot 0, block 1), 1 = uncond (slot 1, block 0). */
Test(bart_golden, decoder_logits_every_step) {
    const int T = cfg.bart.text_length, C = cfg.bart.d_model, P = cfg.bart.image_length;
    const int L = cfg.bart.lm_head_size, V = cfg.bart.image_vocab_size;
    dalle_bart_work w;
    dalle_error err = {0};
    cr_assert_eq(dalle_bart_work_new(&w, &bart, be, 2, 2, 2, &err), DALLE_OK, "%s", err.msg);
    float *enc = malloc(sizeof(float) * 2 * T * C);
    int64_t n_cols;
    float *colsf = golden_tensor(&gold, "logit_columns", &n_cols);
    const int full_steps[4] = {0, 1, 128, 255};
    for (int p = 0; p < N_PROMPTS; p++) {
        int32_t ids[2 * 4096];
        uint8_t mask[2 * 4096];
        golden_prompt_ids(&gold, &cfg, p, ids, mask);
        dalle_bart_encode(&bart, &w, ids, mask, 2, enc);
        dalle_bart_cross_kv(&bart, &w, enc, mask, 0);                     // uncond
        dalle_bart_cross_kv(&bart, &w, enc + (size_t)T * C, mask + T, 1); // cond
        char name[64];
        int64_t n;
        snprintf(name, sizeof name, "p%d.forced_tokens", p);
        float *forced = golden_tensor(&gold, name, &n);
        cr_assert_eq(n, P + 1);
        float *ref_cols[2], *ref_full[2], *stats;
        const char *branch[2] = {"cond", "uncond"};
        for (int b = 0; b < 2; b++) {
            snprintf(name, sizeof name, "p%d.logits_cols_%s", p, branch[b]);
            ref_cols[b] = golden_tensor(&gold, name, &n);
            cr_assert_eq(n, P * n_cols);
            snprintf(name, sizeof name, "p%d.logits_full_%s", p, branch[b]);
            ref_full[b] = golden_tensor(&gold, name, &n);
            cr_assert_eq(n, 4 * L);
        }
        snprintf(name, sizeof name, "p%d.logit_stats", p);
        stats = golden_tensor(&gold, name, &n);
        cr_assert_eq(n, P * 2 * 3);

        double worst = 0, worst_max = 0;
        int argmax_diff = 0, next_full = 0;
        float *ours = malloc(sizeof(float) * n_cols);
        for (int t = 0; t < P; t++) {
            const int32_t tok[2] = {(int32_t)forced[t], (int32_t)forced[t]};
            const int32_t pos[2] = {t, t}, slot[2] = {0, 1}, block[2] = {1, 0};
            dalle_bart_decode_step(&bart, &w, tok, pos, slot, block, 2, L);
            for (int b = 0; b < 2; b++) {
                const float *row = w.logits + (size_t)b * L;
                for (int j = 0; j < n_cols; j++)
                    ours[j] = row[(int)colsf[j]];
                double e = max_rel_err(ours, ref_cols[b] + (size_t)t * n_cols, (size_t)n_cols);
                if (e > worst)
                    worst = e;
                int am = 0;
                for (int j = 1; j < V; j++)
                    if (row[j] > row[am])
                        am = j;
                const float *st = stats + ((size_t)t * 2 + b) * 3;
                double em = fabs(row[am] - st[0]) / fmax(fabs(st[0]), 1e-30);
                if (em > worst_max)
                    worst_max = em;
                argmax_diff += am != (int)st[1];
                if (next_full < 4 && t == full_steps[next_full]) {
                    double ef = max_rel_err(row, ref_full[b] + (size_t)next_full * L, (size_t)L);
                    printf("p%d step %3d %-6s full logits: max relative error %.3g\n", p, t,
                           branch[b], ef);
                    cr_expect(ef <= TOL, "p%d step %d %s full logits error %g", p, t, branch[b],
                              ef);
                }
            }
            if (next_full < 4 && t == full_steps[next_full])
                next_full++;
        }
        printf("decoder p%d: 256 steps × 2 branches, worst max relative error %.3g "
               "(logit max %.3g), argmax differences %d\n",
               p, worst, worst_max, argmax_diff);
        cr_expect(worst <= TOL, "p%d: logits max relative error %g > %g", p, worst, TOL);
        cr_expect_eq(argmax_diff, 0, "p%d: %d steps with a different argmax", p, argmax_diff);
        free(ours);
        free(stats);
        for (int b = 0; b < 2; b++)
            free(ref_cols[b]), free(ref_full[b]);
        free(forced);
    }
    free(colsf);
    free(enc);
    dalle_bart_work_free(&w);
}

/* Guided greedy decoding through the public API (top_k 1, cond_scale 10) equals
 * min-dalle's sample_tokens loop token for token. */
Test(bart_golden, greedy_tokens_public_api) {
    expect_greedy_codes(MODEL_DIR, &gold, &cfg, N_PROMPTS, 10.0f, 1234);
}
