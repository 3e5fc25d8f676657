/* test_clip_tokenizer.c — the C CLIP tokenizer against open_clip's SimpleTokenizer on raw
 * prompts (fixture tests/golden/text/clip_ids.jsonl from
 * tools/reference/gen_tokenizer_golden.py; bar: zero mismatching rows), plus the vocabulary
 * layout, truncation, UTF-8 validation and damaged-file errors.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"
#include "model/text/clip_tokenizer.h"
#include "tests/text/tokenizer_test.h"

#define MERGES   "models/tiny/clip_merges.txt"
#define N_MERGES 48894
#define GOLDEN   "tests/golden/text/clip_ids.jsonl"
#define CTX      DALLE_CLIP_CONTEXT

static dalle_clip_tokenizer *tok;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_tokenizer_load(&tok, MERGES, N_MERGES, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_clip_tokenizer_free(tok);
}

TestSuite(clip_tokenizer, .init = setup, .fini = teardown, .timeout = 120);

static dalle_status tokenize(const void *t, const char *text, size_t n, int len, int32_t *ids,
                             uint8_t *mask, int *n_real, dalle_error *err) {
    dalle_status s = dalle_clip_tokenize(t, text, n, len, ids, n_real, err);
    for (int i = 0; s == DALLE_OK && i < len; i++)
        mask[i] = i < *n_real;
    return s;
}

Test(clip_tokenizer, golden_parity) {
    cr_assert_eq(golden_run(GOLDEN, "prompt", tok, tokenize), 0,
                 "C and open_clip token ids differ (table above)");
}

Test(clip_tokenizer, vocabulary_layout) {
    cr_assert_eq(dalle_clip_tokenizer_vocab_size(tok), 49408);
    cr_assert_eq(dalle_clip_tokenizer_sot(tok), 49406);
    cr_assert_eq(dalle_clip_tokenizer_eot(tok), 49407);
    int32_t ids[CTX];
    int n = -1;
    cr_assert_eq(dalle_clip_tokenize(tok, "", 0, CTX, ids, &n, NULL), DALLE_OK);
    cr_assert_eq(n, 2);
    cr_assert(ids[0] == 49406 && ids[1] == 49407);
    for (int i = 2; i < CTX; i++)
        cr_assert_eq(ids[i], 0);
    /* lone bytes get "</w>": "!</w>" = 256 + 0, "a</w>" = 256 + 64 */
    cr_assert_eq(dalle_clip_tokenize(tok, "! a", 3, CTX, ids, &n, NULL), DALLE_OK);
    const int32_t want[] = {49406, 256, 320, 49407, 0};
    cr_assert_arr_eq(ids, want, sizeof want);
}

Test(clip_tokenizer, truncation_ends_with_eot) {
    char text[2048] = "";
    for (int i = 0; i < 100; i++)
        strcat(text, " red 7,");
    int32_t full[512], ids[CTX];
    int n_full, n;
    cr_assert_eq(dalle_clip_tokenize(tok, text, strlen(text), 512, full, &n_full, NULL), DALLE_OK);
    cr_assert_gt(n_full, CTX);
    cr_assert_eq(dalle_clip_tokenize(tok, text, strlen(text), CTX, ids, &n, NULL), DALLE_OK);
    cr_assert_eq(n, CTX);
    cr_assert_arr_eq(ids, full, (CTX - 1) * sizeof *ids, "SOT + the first 75 content tokens");
    cr_assert_eq(ids[CTX - 1], 49407);
}

Test(clip_tokenizer, invalid_input) {
    static const char *const bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                      "\xf4\x90\x80\x80"};
    int32_t ids[CTX];
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        dalle_error err = {0};
        cr_assert_eq(dalle_clip_tokenize(tok, bad[k], strlen(bad[k]), CTX, ids, NULL, &err),
                     DALLE_ERR_INVALID_ARG, "case %zu", k);
        cr_assert(strstr(err.msg, "UTF-8"), "%s", err.msg);
    }
    cr_assert_eq(dalle_clip_tokenize(tok, "a", 1, 1, ids, NULL, NULL), DALLE_ERR_INVALID_ARG);
}

static void expect_load_error(const char *path, int n_merges, dalle_status want,
                              const char *msg_part) {
    dalle_clip_tokenizer *t = (void *)1;
    dalle_error err = {0};
    cr_assert_eq(dalle_clip_tokenizer_load(&t, path, n_merges, &err), want, "%s", err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, msg_part), "message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

Test(clip_tokenizer, damaged_files) {
    expect_load_error("/nonexistent/clip_merges.txt", N_MERGES, DALLE_ERR_IO, "/nonexistent");
    expect_load_error(tmp_write("m0.txt", ""), 0, DALLE_ERR_FORMAT, "empty merges file");
    expect_load_error(tmp_write("m1.txt", "#version\ni n\nt h\n"), N_MERGES, DALLE_ERR_FORMAT,
                      "2 merges, the model needs 48894");
    expect_load_error(tmp_write("m2.txt", "#version\ni n\nth\n"), 0, DALLE_ERR_FORMAT,
                      "m2.txt:3: expected \"left right\"");
    expect_load_error(tmp_write("m3.txt", "#version\ni n\nin xyz\n"), 0, DALLE_ERR_FORMAT,
                      "m3.txt:3: merge \"in xyz\" uses \"xyz\"");

    /* a two-merge file: vocabulary 512 + 2 + 2, and the merges apply */
    dalle_clip_tokenizer *t;
    dalle_error err = {0};
    cr_assert_eq(
        dalle_clip_tokenizer_load(&t, tmp_write("m4.txt", "#version\ni n\nin g</w>\n"), 0, &err),
        DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_clip_tokenizer_vocab_size(t), 516);
    cr_assert_eq(dalle_clip_tokenizer_eot(t), 515);
    int32_t ids[6];
    cr_assert_eq(dalle_clip_tokenize(t, "ING", 3, 6, ids, NULL, NULL), DALLE_OK);
    const int32_t want[] = {514, 513, 515, 0, 0, 0};
    cr_assert_arr_eq(ids, want, sizeof want);
    dalle_clip_tokenizer_free(t);
    tmp_cleanup();
}
