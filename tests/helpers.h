/* helpers.h — small shared helpers for the C tests: golden tensors read through our own
 * safetensors reader, golden prompt ids, the public-API greedy-codes check, and the error
 * metric every parity test uses:
 *   max relative error = max_i |ours_i − ref_i| / max_i |ref_i|.
 */
#ifndef DALLE_TESTS_HELPERS_H
#define DALLE_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dalle.h"
#include "model_loader/model_config.h"
#include "model_loader/safetensors.h"

/* The golden tensor `name` as a malloc'd fp32 array; *numel receives its size. */
static inline float *golden_tensor(const dalle_safetensors *st, const char *name, int64_t *numel) {
    const dalle_st_tensor *t = dalle_safetensors_find(st, name);
    cr_assert_not_null(t, "golden tensor '%s' missing from %s", name, st->label);
    float *v = malloc((size_t)t->numel * sizeof *v);
    cr_assert_not_null(v);
    dalle_st_tensor_to_f32(t, v);
    if (numel)
        *numel = t->numel;
    return v;
}

/* BART text ids of golden prompt p, "p{p}.text_ids", as int32 [2, T] (row 0 uncond, row 1
 * cond) with their masks. */
static inline void golden_prompt_ids(const dalle_safetensors *st, const dalle_model_config *cfg,
                                     int p, int32_t *ids, uint8_t *mask) {
    char name[64];
    int64_t n;
    snprintf(name, sizeof name, "p%d.text_ids", p);
    float *f = golden_tensor(st, name, &n);
    cr_assert_eq(n, 2 * cfg->bart.text_length);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (int32_t)f[i];
        mask[i] = ids[i] != cfg->text.pad_id;
    }
    free(f);
}

static inline double max_rel_err(const float *ours, const float *ref, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= diff))
            diff = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

/* Guided greedy decoding through the public API (top_k 1) of the model in `dir` equals the
 * reference's "p{p}.greedy_tokens" for each golden prompt, in both images of a 2-image job
 * (image independence). Seeds are seed0 + p (greedy decoding ignores them). */
static inline void expect_greedy_codes(const char *dir, const dalle_safetensors *st,
                                       const dalle_model_config *cfg, int n_prompts,
                                       float cond_scale, uint64_t seed0) {
    dalle_error err = {0};
    dalle_model *m;
    cr_assert_eq(dalle_model_load(&m, dir, NULL, &err), DALLE_OK, "%s", err.msg);
    dalle_state *s;
    dalle_state_params sp = {.max_images = 2};
    cr_assert_eq(dalle_state_new(&s, m, &sp, &err), DALLE_OK, "%s", err.msg);
    const int T = cfg->bart.text_length, P = cfg->bart.image_length;
    for (int p = 0; p < n_prompts; p++) {
        int32_t ids[2 * 4096];
        uint8_t mask[2 * 4096];
        golden_prompt_ids(st, cfg, p, ids, mask);
        dalle_text text = {.text_length = T, .ids = ids + T, .mask = mask + T};
        dalle_gen_params gp;
        dalle_gen_params_default(m, &gp);
        gp.top_k = 1;
        gp.cond_scale = cond_scale;
        gp.n_images = 2;
        gp.seed = seed0 + (uint64_t)p;
        int32_t codes[2 * 4096];
        cr_assert_eq(dalle_generate_codes_text(s, &text, &gp, codes, NULL, &err), DALLE_OK, "%s",
                     err.msg);
        char name[64];
        int64_t n;
        snprintf(name, sizeof name, "p%d.greedy_tokens", p);
        float *ref = golden_tensor(st, name, &n);
        cr_assert_eq(n, P);
        int diff = 0, first = -1;
        for (int i = 0; i < P; i++)
            if (codes[i] != (int32_t)ref[i] || codes[P + i] != (int32_t)ref[i]) {
                diff++;
                if (first < 0)
                    first = i;
            }
        printf("%s greedy p%d: %d/%d codes differ from the reference\n", dir, p, diff, P);
        cr_expect_eq(diff, 0, "p%d: %d greedy codes differ (first at step %d)", p, diff, first);
        free(ref);
    }
    dalle_state_free(s);
    dalle_model_free(m);
}

#endif /* DALLE_TESTS_HELPERS_H */
