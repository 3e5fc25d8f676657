/* test_pipeline.c — the public pipeline on the tiny model: reproducibility (same seed →
 * byte-identical JPEGs), batch independence (image i is the same with n = 1 and n = 4, and
 * when other prompts share the decode batch), ranking consistency, cancellation and the
 * errors a caller can cause.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dalle.h"

#define MODEL_DIR "models/tiny"
#define PROMPT    "a red bicycle leaning against a brick wall"

static dalle_model *m;
static dalle_model_info info;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_model_load(&m, MODEL_DIR, NULL, &err), DALLE_OK, "%s", err.msg);
    dalle_model_get_info(m, &info);
    cr_assert(info.has_vqgan && info.has_clip);
}

static void teardown(void) {
    dalle_model_free(m);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 300);

static dalle_state *state(int max_images, int max_prompts) {
    dalle_state *s;
    dalle_error err = {0};
    dalle_state_params sp = {.max_images = max_images, .max_prompts = max_prompts};
    cr_assert_eq(dalle_state_new(&s, m, &sp, &err), DALLE_OK, "%s", err.msg);
    return s;
}

static dalle_gen_params params(int n, uint64_t seed) {
    dalle_gen_params p;
    dalle_gen_params_default(m, &p);
    p.n_images = n;
    p.seed = seed;
    return p;
}

static void generate(dalle_state *s, const char *prompt, int n, uint64_t seed, dalle_result *r) {
    dalle_gen_params p = params(n, seed);
    dalle_error err = {0};
    cr_assert_eq(dalle_generate(s, prompt, strlen(prompt), &p, NULL, r, &err), DALLE_OK, "%s",
                 err.msg);
}

static const dalle_image *by_index(const dalle_result *r, int index) {
    for (int k = 0; k < r->n_images; k++)
        if (r->images[k].index == index)
            return &r->images[k];
    cr_assert_fail("image %d missing from the result", index);
    return NULL;
}

Test(pipeline, same_seed_gives_byte_identical_jpegs) {
    dalle_state *s1 = state(4, 1), *s2 = state(4, 1);
    dalle_result a, b;
    generate(s1, PROMPT, 4, 42, &a);
    generate(s2, PROMPT, 4, 42, &b);
    cr_assert_eq(a.n_images, 4);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(a.images[k].index, b.images[k].index);
        cr_assert_eq(a.images[k].jpeg_size, b.images[k].jpeg_size);
        cr_assert_arr_eq(a.images[k].jpeg, b.images[k].jpeg, a.images[k].jpeg_size);
    }
    dalle_result c;
    generate(s1, PROMPT, 4, 43, &c); // the same state again, another seed
    cr_assert(memcmp(a.codes, c.codes, sizeof(int32_t) * info.image_length) != 0);
    dalle_result_free(&a);
    dalle_result_free(&b);
    dalle_result_free(&c);
    dalle_state_free(s1);
    dalle_state_free(s2);
}

Test(pipeline, image_zero_is_the_same_with_n1_and_n4) {
    dalle_state *s = state(4, 1);
    dalle_result one, four;
    generate(s, PROMPT, 1, 7, &one);
    generate(s, PROMPT, 4, 7, &four);
    const dalle_image *a = by_index(&one, 0), *b = by_index(&four, 0);
    cr_assert_arr_eq(one.codes, four.codes, sizeof(int32_t) * info.image_length);
    cr_assert_eq(a->jpeg_size, b->jpeg_size);
    cr_assert_arr_eq(a->jpeg, b->jpeg, a->jpeg_size);
    cr_assert_float_eq(a->score, b->score, 1e-5);
    dalle_result_free(&one);
    dalle_result_free(&four);
    dalle_state_free(s);
}

Test(pipeline, images_are_independent_of_other_prompts_in_the_batch) {
    dalle_state *s = state(6, 3);
    const char *prompts[3] = {PROMPT, "a snowy cabin at night", "an old map of the sea"};
    dalle_text t[3];
    dalle_gen_params p[3] = {params(2, 11), params(3, 12), params(1, 13)};
    p[1].top_k = 7;
    p[2].temperature = 0.7f;
    dalle_error err = {0};
    for (int r = 0; r < 3; r++)
        cr_assert_eq(dalle_text_encode(m, prompts[r], strlen(prompts[r]), &t[r], &err), DALLE_OK);
    const size_t L = (size_t)info.image_length;
    int32_t *together[3], *alone = malloc(sizeof(int32_t) * 3 * L);
    for (int r = 0; r < 3; r++)
        together[r] = malloc(sizeof(int32_t) * 3 * L);
    cr_assert_eq(dalle_generate_codes_batch(s, 3, t, p, together, NULL, &err), DALLE_OK, "%s",
                 err.msg);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(dalle_generate_codes_text(s, &t[r], &p[r], alone, NULL, &err), DALLE_OK);
        cr_assert_arr_eq(alone, together[r], sizeof(int32_t) * L * p[r].n_images,
                         "request %d changed when batched", r);
    }
    /* limits of a batch */
    dalle_gen_params big[3] = {params(4, 1), params(2, 1), params(1, 1)};
    cr_assert_eq(dalle_generate_codes_batch(s, 3, t, big, together, NULL, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "7 images"));
    cr_assert_eq(dalle_generate_codes_batch(s, 4, t, p, together, NULL, &err),
                 DALLE_ERR_INVALID_ARG);
    for (int r = 0; r < 3; r++)
        free(together[r]), dalle_text_free(&t[r]);
    free(alone);
    dalle_state_free(s);
}

Test(pipeline, ranking_matches_rank_images_and_is_descending) {
    dalle_state *s = state(4, 1);
    dalle_result r;
    generate(s, PROMPT, 4, 5, &r);
    cr_assert(r.ranked);
    int seen = 0;
    for (int k = 0; k < 4; k++) {
        seen |= 1 << r.images[k].index;
        if (k)
            cr_assert_geq(r.images[k - 1].score, r.images[k].score);
    }
    cr_assert_eq(seen, 15, "indices must be a permutation of 0..3");
    /* the same scores from the stage functions */
    const int R = info.image_size;
    uint8_t *rgb = malloc((size_t)4 * R * R * 3);
    dalle_error err = {0};
    cr_assert_eq(dalle_decode_codes(s, r.codes, 4, rgb, &err), DALLE_OK, "%s", err.msg);
    dalle_text t;
    cr_assert_eq(dalle_text_encode(m, PROMPT, strlen(PROMPT), &t, &err), DALLE_OK);
    const uint8_t *imgs[4];
    int side[4];
    for (int i = 0; i < 4; i++)
        imgs[i] = rgb + (size_t)i * R * R * 3, side[i] = R;
    float scores[4];
    int32_t order[4];
    cr_assert_eq(dalle_rank_images(s, t.clip_ids, imgs, side, side, 4, scores, order, &err),
                 DALLE_OK);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(order[k], r.images[k].index);
        cr_assert_float_eq(scores[order[k]], r.images[k].score, 1e-6);
    }
    cr_assert(r.timings.decode_ms > 0 && r.timings.vqgan_ms > 0 && r.timings.clip_ms > 0);
    cr_assert(r.timings.total_ms >= r.timings.decode_ms + r.timings.vqgan_ms);
    dalle_text_free(&t);
    free(rgb);
    dalle_result_free(&r);
    dalle_state_free(s);
}

static int stop_after(void *user) {
    int *calls = user;
    return ++*calls > 10;
}

Test(pipeline, cancellation_between_steps) {
    dalle_state *s = state(1, 1);
    dalle_gen_params p = params(1, 1);
    int calls = 0;
    p.should_stop = stop_after;
    p.user = &calls;
    dalle_result r;
    dalle_error err = {0};
    cr_assert_eq(dalle_generate(s, PROMPT, strlen(PROMPT), &p, NULL, &r, &err),
                 DALLE_ERR_CANCELLED);
    cr_assert_eq(calls, 11);
    cr_assert_null(r.images);
    /* the state is still usable */
    generate(s, PROMPT, 1, 1, &r);
    dalle_result_free(&r);
    dalle_state_free(s);
}

Test(pipeline, caller_errors) {
    dalle_state *s = state(2, 1);
    dalle_error err = {0};
    dalle_result r;
    dalle_gen_params p = params(3, 1);
    cr_assert_eq(dalle_generate(s, PROMPT, strlen(PROMPT), &p, NULL, &r, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "n must be"));
    p = params(1, 1);
    dalle_output_params o;
    dalle_output_params_default(m, &o);
    cr_assert_eq(o.jpeg_subsampling, 444); /* the tiny model's images are 64×64 */
    o.jpeg_quality = 0;
    cr_assert_eq(dalle_generate(s, PROMPT, strlen(PROMPT), &p, &o, &r, &err),
                 DALLE_ERR_INVALID_ARG);
    o.jpeg_quality = 90;
    o.jpeg_subsampling = 411;
    cr_assert_eq(dalle_generate(s, PROMPT, strlen(PROMPT), &p, &o, &r, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_eq(dalle_generate(s, "caf\xc3", 4, &p, NULL, &r, &err), DALLE_ERR_INVALID_ARG);
    int32_t codes[2 * 4096] = {0};
    uint8_t rgb[64 * 64 * 3];
    codes[17] = info.image_vocab_size; // one past the codebook
    cr_assert_eq(dalle_decode_codes(s, codes, 1, rgb, &err), DALLE_ERR_INVALID_ARG);
    codes[17] = -1;
    cr_assert_eq(dalle_decode_codes(s, codes, 1, rgb, &err), DALLE_ERR_INVALID_ARG);
    dalle_state_params sp = {.max_images = 2, .max_prompts = 3};
    dalle_state *bad;
    cr_assert_eq(dalle_state_new(&bad, m, &sp, &err), DALLE_ERR_INVALID_ARG);
    dalle_state_free(s);
}

/* A state for 3 images and 2 prompts, and two encoded prompts. */
static dalle_state *two_prompts(dalle_text *ta, dalle_text *tb) {
    dalle_error err = {0};
    cr_assert_eq(dalle_text_encode(m, PROMPT, strlen(PROMPT), ta, &err), DALLE_OK);
    cr_assert_eq(dalle_text_encode(m, "a snowy cabin", 13, tb, &err), DALLE_OK);
    return state(3, 2);
}

/* Iteration-level batching: a job that joins a running batch mid-way, and one that is
 * cancelled, leave the other jobs' images unchanged (also when an image moves to another
 * row of the batch because a job before it left). */
Test(pipeline, jobs_join_and_leave_at_any_step) {
    const size_t L = (size_t)info.image_length;
    dalle_text ta, tb;
    dalle_state *s = two_prompts(&ta, &tb);
    dalle_error err = {0};
    dalle_gen_params pa = params(2, 21), pb = params(1, 22);
    int32_t *alone_a = malloc(sizeof(int32_t) * 2 * L), *alone_b = malloc(sizeof(int32_t) * L);
    cr_assert_eq(dalle_generate_codes_text(s, &ta, &pa, alone_a, NULL, &err), DALLE_OK);
    cr_assert_eq(dalle_generate_codes_text(s, &tb, &pb, alone_b, NULL, &err), DALLE_OK);

    int32_t *a = malloc(sizeof(int32_t) * 2 * L), *b = malloc(sizeof(int32_t) * L);
    int ja, jb, jc;
    cr_assert_eq(dalle_job_start(s, &ta, &pa, &ja, &err), DALLE_OK);
    cr_assert_geq(ja, 0);
    cr_assert_eq(dalle_state_free_images(s), 1);
    /* no room for two more images now: not an error, just no job */
    dalle_gen_params pc = params(2, 23);
    cr_assert_eq(dalle_job_start(s, &tb, &pc, &jc, &err), DALLE_OK);
    cr_assert_eq(jc, -1);
    /* never fits */
    dalle_gen_params huge = params(4, 1);
    cr_assert_eq(dalle_job_start(s, &tb, &huge, &jc, &err), DALLE_ERR_UNSUPPORTED);
    for (int t = 0; t < 100; t++)
        dalle_state_step(s);
    cr_assert_eq(dalle_job_progress(s, ja), 100);
    cr_assert_eq(dalle_job_codes(s, ja, a), 100);
    cr_assert_arr_eq(a, alone_a, sizeof(int32_t) * 100, "a's first 100 codes");
    cr_assert_eq(dalle_job_start(s, &tb, &pb, &jb, &err), DALLE_OK); // joins at step 100
    cr_assert_geq(jb, 0);
    cr_assert_eq(dalle_state_running_images(s), 3);
    cr_assert_eq(dalle_state_free_prompts(s), 0);
    while (dalle_job_progress(s, ja) < (int)L)
        dalle_state_step(s);
    cr_assert_eq(dalle_job_progress(s, jb), (int)L - 100, "b joined 100 steps after a");
    cr_assert_eq(dalle_state_free_images(s), 0, "a done holds its images until released");
    cr_assert_eq(dalle_state_free_prompts(s), 1, "a done frees its prompt block");
    cr_assert_eq(dalle_job_codes(s, ja, a), (int)L);
    cr_assert_arr_eq(a, alone_a, sizeof(int32_t) * 2 * L, "a changed when b joined mid-way");
    dalle_job_release(s, ja);
    cr_assert_eq(dalle_state_free_images(s), 2, "a's rows are free once it is released");
    cr_assert_eq(dalle_job_progress(s, ja), -1);
    cr_assert_eq(dalle_job_codes(s, ja, a), -1);
    while (dalle_job_progress(s, jb) < (int)L) // b now decodes alone, in row 0
        dalle_state_step(s);
    cr_assert_eq(dalle_job_codes(s, jb, b), (int)L);
    cr_assert_arr_eq(b, alone_b, sizeof(int32_t) * L, "b differs from b alone");
    dalle_job_release(s, jb);

    /* cancel: rows are free at once, the other job is unaffected */
    cr_assert_eq(dalle_job_start(s, &tb, &pc, &jc, &err), DALLE_OK);
    cr_assert_eq(dalle_job_start(s, &tb, &pb, &jb, &err), DALLE_OK);
    for (int t = 0; t < 10; t++)
        dalle_state_step(s);
    dalle_job_release(s, jc);
    cr_assert_eq(dalle_state_running_images(s), 1);
    while (dalle_job_progress(s, jb) < (int)L)
        dalle_state_step(s);
    cr_assert_eq(dalle_job_codes(s, jb, b), (int)L);
    cr_assert_arr_eq(b, alone_b, sizeof(int32_t) * L);
    dalle_job_release(s, jb);
    cr_assert_eq(dalle_state_running_images(s), 0);
    dalle_state_step(s); // nothing running: a no-op
    free(a), free(b), free(alone_a), free(alone_b);
    dalle_text_free(&ta);
    dalle_text_free(&tb);
    dalle_state_free(s);
}

/* The device→host copies and waits of the job API, on the CPU backend's accounting (the
 * same calls as on a GPU): a decode step makes none, whether jobs join, run on, move to
 * other rows or are cancelled; only reading codes, a preview and finishing a job do. */
static long step_copies(dalle_state *s, long *syncs) {
    long c0, s0, c1, s1;
    dalle_state_device_counts(s, &c0, &s0);
    dalle_state_step(s);
    dalle_state_device_counts(s, &c1, &s1);
    *syncs = s1 - s0;
    return c1 - c0;
}

Test(pipeline, decode_steps_copy_nothing_to_the_host) {
    const int L = info.image_length, R = info.image_size;
    dalle_text ta, tb;
    dalle_state *s = two_prompts(&ta, &tb);
    dalle_error err = {0};
    dalle_gen_params pa = params(2, 31), pb = params(1, 32);
    int ja, jb;
    long syncs, c0, s0, c1, s1;
    cr_assert_eq(dalle_job_start(s, &ta, &pa, &ja, &err), DALLE_OK);
    for (int t = 0; t < L; t++) {
        if (t == 7) // joins, then is cancelled: the rows of a stay put
            cr_assert_eq(dalle_job_start(s, &tb, &pb, &jb, &err), DALLE_OK);
        if (t == 20)
            dalle_job_release(s, jb);
        cr_assert_eq(step_copies(s, &syncs), 0, "step %d copied to the host", t);
        cr_assert_eq(syncs, 0, "step %d waited for the device", t);
    }
    cr_assert_eq(dalle_job_progress(s, ja), L);
    uint8_t *rgb = malloc((size_t)2 * R * R * 3);
    int32_t *codes = malloc(sizeof(int32_t) * 2 * L), order[2];
    float scores[2];
    dalle_state_device_counts(s, &c0, &s0);
    cr_assert_eq(dalle_job_codes(s, ja, codes), L);
    dalle_state_device_counts(s, &c1, &s1);
    cr_expect_eq(c1 - c0, 1, "the codes of a job come back in one copy");
    cr_assert_eq(dalle_job_preview(s, ja, rgb, &err), DALLE_OK, "%s", err.msg);
    dalle_state_device_counts(s, &c0, &s0);
    cr_expect_eq(c0 - c1, 3, "preview: codes, then the VQGAN's bytes and finite flag");
    const dalle_job_output out = {NULL, rgb, order, scores};
    cr_assert_eq(dalle_job_finish(s, ja, ta.clip_ids, &out, NULL, &err), DALLE_OK, "%s", err.msg);
    dalle_state_device_counts(s, &c1, &s1);
    cr_expect_eq(c1 - c0, 5, "finish: codes, bytes, finite flag, text and image embeddings");
    cr_expect_eq(s1 - s0, 5, "finish waits once per copy");
    cr_assert_eq(dalle_job_progress(s, ja), -1, "finish frees the handle");
    cr_assert_eq(dalle_state_free_images(s), 3);
    free(rgb), free(codes);
    dalle_text_free(&ta);
    dalle_text_free(&tb);
    dalle_state_free(s);
}
