/* test_bart_tokenizer.c — the C BART tokenizer against transformers' BartTokenizerFast on
 * models/tiny (fixture tests/golden/text/bart_ids.jsonl from
 * tools/reference/gen_tokenizer_golden.py; bar: zero mismatching rows), plus special ids,
 * truncation, UTF-8 validation, thread sharing and damaged-file errors.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"
#include "model/text/bart_tokenizer.h"
#include "tests/text/tokenizer_test.h"

#define VOCAB  "models/tiny/vocab.json"
#define MERGES "models/tiny/merges.txt"
#define GOLDEN "tests/golden/text/bart_ids.jsonl"
#define T      64

static dalle_bart_tokenizer *tok;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_bart_tokenizer_load(&tok, VOCAB, MERGES, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_bart_tokenizer_free(tok);
}

TestSuite(bart_tokenizer, .init = setup, .fini = teardown, .timeout = 120);

static dalle_status tokenize(const void *t, const char *text, size_t n, int len, int32_t *ids,
                             uint8_t *mask, int *n_real, dalle_error *err) {
    return dalle_bart_tokenize(t, text, n, len, ids, mask, n_real, err);
}

Test(bart_tokenizer, golden_parity) {
    cr_assert_eq(golden_run(GOLDEN, "normalized", tok, tokenize), 0,
                 "C and HF token ids differ (table above)");
}

Test(bart_tokenizer, special_ids_and_empty_text) {
    cr_assert_eq(dalle_bart_tokenizer_vocab_size(tok), 4000);
    int32_t ids[T];
    uint8_t mask[T];
    int n = -1;
    cr_assert_eq(dalle_bart_tokenize(tok, "", 0, T, ids, mask, &n, NULL), DALLE_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 0); /* <s> */
    cr_assert_eq(ids[1], 2); /* </s> */
    for (int i = 2; i < T; i++)
        cr_assert(ids[i] == 1 && mask[i] == 0); /* <pad> */
    cr_assert(mask[0] && mask[1]);

    const char *s = " a <mask></s><unk><pad><s>";
    cr_assert_eq(dalle_bart_tokenize(tok, s, strlen(s), T, ids, mask, &n, NULL), DALLE_OK);
    cr_assert_eq(n, 9);
    const int32_t want[] = {0, 260, 224, 3999, 2, 3, 1, 0, 2}; /* " a", " ", specials, </s> */
    cr_assert_arr_eq(ids, want, sizeof want);
}

Test(bart_tokenizer, truncation_keeps_eos) {
    char text[4096] = "";
    for (int i = 0; i < 100; i++)
        strcat(text, " red 42 ,");
    int32_t full[512], ids[T];
    uint8_t fmask[512], mask[T];
    int n_full, n;
    cr_assert_eq(dalle_bart_tokenize(tok, text, strlen(text), 512, full, fmask, &n_full, NULL),
                 DALLE_OK);
    cr_assert_gt(n_full, T);
    cr_assert_eq(dalle_bart_tokenize(tok, text, strlen(text), T, ids, mask, &n, NULL), DALLE_OK);
    cr_assert_eq(n, T);
    cr_assert_arr_eq(ids, full, 63 * sizeof *ids, "<s> + the first 62 content tokens");
    cr_assert_eq(ids[63], 2, "</s> last");
    for (int i = 0; i < T; i++)
        cr_assert_eq(mask[i], 1);

    /* " red" is one token: 61 fit with room to spare, 62 fill the row, 63 are cut to 62 */
    for (int k = 61; k <= 63; k++) {
        text[0] = 0;
        for (int i = 0; i < k; i++)
            strcat(text, " red");
        cr_assert_eq(dalle_bart_tokenize(tok, text, strlen(text), T, ids, mask, &n, NULL),
                     DALLE_OK);
        int content = k < 62 ? k : 62;
        cr_assert_eq(n, content + 2, "k=%d", k);
        for (int i = 1; i <= content; i++)
            cr_assert_eq(ids[i], ids[1]);
        cr_assert_eq(ids[content + 1], 2, "k=%d: </s> at %d", k, content + 1);
        cr_assert_eq(ids[63], k < 62 ? 1 : 2);
        cr_assert_eq(mask[63], k >= 62);
    }
}

Test(bart_tokenizer, invalid_utf8) {
    static const char *const bad[] = {
        "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "ok \x80 ok"};
    int32_t ids[T];
    uint8_t mask[T];
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        dalle_error err = {0};
        cr_assert_eq(dalle_bart_tokenize(tok, bad[k], strlen(bad[k]), T, ids, mask, NULL, &err),
                     DALLE_ERR_INVALID_ARG, "case %zu", k);
        cr_assert(strstr(err.msg, "UTF-8"), "%s", err.msg);
    }
    cr_assert_eq(dalle_bart_tokenize(tok, "a", 1, 1, ids, mask, NULL, NULL), DALLE_ERR_INVALID_ARG);
    /* an embedded NUL is text like any other */
    cr_assert_eq(dalle_bart_tokenize(tok, "a\0b", 3, T, ids, mask, NULL, NULL), DALLE_OK);
}

typedef struct {
    const int32_t *want;
    int ok;
} thread_arg;

static const char *const thread_texts[] = {" a cat on the moon", " 2022 , \xe6\x97\xa5\xe6\x9c\xac",
                                           "Caf\xc3\xa9 <mask>!", " the farmer's daughter"};
#define N_TEXTS (sizeof thread_texts / sizeof *thread_texts)

static void *tokenize_many(void *p) {
    thread_arg *a = p;
    a->ok = 1;
    for (int rep = 0; rep < 2000; rep++) {
        int32_t ids[T];
        uint8_t mask[T];
        size_t k = (size_t)rep % N_TEXTS;
        if (dalle_bart_tokenize(tok, thread_texts[k], strlen(thread_texts[k]), T, ids, mask, NULL,
                                NULL) != DALLE_OK ||
            memcmp(ids, a->want + k * T, sizeof ids))
            a->ok = 0;
    }
    return NULL;
}

Test(bart_tokenizer, shared_by_threads) {
    int32_t want[N_TEXTS * T];
    uint8_t mask[T];
    for (size_t k = 0; k < N_TEXTS; k++)
        cr_assert_eq(dalle_bart_tokenize(tok, thread_texts[k], strlen(thread_texts[k]), T,
                                         want + k * T, mask, NULL, NULL),
                     DALLE_OK);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].want = want;
        cr_assert_eq(pthread_create(&th[i], NULL, tokenize_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert(args[i].ok, "thread %d saw different ids", i);
    }
}

/* ---- damaged files ------------------------------------------------------------------- */

static void expect_load_error(const char *vocab, const char *merges, dalle_status want,
                              const char *msg_part) {
    dalle_bart_tokenizer *t = (void *)1;
    dalle_error err = {0};
    cr_assert_eq(dalle_bart_tokenizer_load(&t, vocab, merges, &err), want, "%s", err.msg);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, msg_part), "message \"%s\" lacks \"%s\"", err.msg, msg_part);
}

#define MINI_VOCAB "{\"<s>\":0,\"<pad>\":1,\"</s>\":2,\"<unk>\":3,\"a\":4,\"b\":5,\"ab\":6}"

Test(bart_tokenizer, damaged_files) {
    expect_load_error("/nonexistent/vocab.json", MERGES, DALLE_ERR_IO, "/nonexistent/vocab.json");
    expect_load_error(VOCAB, "/nonexistent/merges.txt", DALLE_ERR_IO, "/nonexistent/merges.txt");
    expect_load_error(tmp_write("v1.json", "{\"a\": 1,"), MERGES, DALLE_ERR_FORMAT, "v1.json:1");
    expect_load_error(tmp_write("v2.json", "[1, 2]"), MERGES, DALLE_ERR_FORMAT, "JSON object");
    expect_load_error(tmp_write("v3.json", "{\"<s>\": \"zero\"}"), MERGES, DALLE_ERR_FORMAT,
                      "\"<s>\" has no valid id");
    expect_load_error(tmp_write("v4.json", "{\"<pad>\": 1, \"</s>\": 2}"), MERGES, DALLE_ERR_FORMAT,
                      "no \"<s>\" entry");
    const char *v = tmp_write("v5.json", MINI_VOCAB);
    expect_load_error(v, tmp_write("m1.txt", "#version: 0.2\na b\nab\n"), DALLE_ERR_FORMAT,
                      "m1.txt:3: expected \"left right\"");
    expect_load_error(v, tmp_write("m2.txt", "#version: 0.2\nb a\n"), DALLE_ERR_FORMAT,
                      "m2.txt:2: merge \"b a\" uses \"ba\"");

    /* a minimal pair of files loads, and merges apply */
    dalle_bart_tokenizer *t;
    dalle_error err = {0};
    cr_assert_eq(
        dalle_bart_tokenizer_load(&t, v, tmp_write("m3.txt", "#version: 0.2\r\na b\r\n"), &err),
        DALLE_OK, "%s", err.msg);
    int32_t ids[8];
    uint8_t mask[8];
    int n;
    cr_assert_eq(dalle_bart_tokenize(t, "abxa", 4, 8, ids, mask, &n, NULL), DALLE_OK);
    const int32_t want[] = {0, 6, 4, 2, 1, 1, 1, 1}; /* "x" has no symbol: dropped, as HF does */
    cr_assert_arr_eq(ids, want, sizeof want);
    dalle_bart_tokenizer_free(t);
    tmp_cleanup();
}
