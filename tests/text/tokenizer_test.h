/* tokenizer_test.h — what both tokenizer tests share.
 *
 * golden_run: each line of a
 * jsonl file is {"category", <text_key>, "ids"[, "mask"]}; the tokenizer under test runs on
 * the text with len = the length of "ids", and the row matches when ids (and mask, when the
 * row has one) are equal. Prints the table "category compared mismatches", the first
 * mismatches in full, and the throughput; returns the number of mismatching rows.
 *
 * tmp_write: a small file in a private temporary folder (for damaged-file tests); the last
 * two paths stay valid. tmp_cleanup removes the files and the folder.
 */
#ifndef DALLE_TESTS_TEXT_TOKENIZER_TEST_H
#define DALLE_TESTS_TEXT_TOKENIZER_TEST_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dalle.h"

#define GOLDEN_MAX_LEN        256
#define GOLDEN_MAX_CATEGORIES 64
#define GOLDEN_SHOW           5

/* Tokenize text[0..n) into ids[len] and mask[len]; *n_real = real tokens. */
typedef dalle_status (*golden_tokenize_fn)(const void *tok, const char *text, size_t n, int len,
                                           int32_t *ids, uint8_t *mask, int *n_real,
                                           dalle_error *err);

static void golden_print_ids(const char *label, const int32_t *v, int n) {
    printf("    %s", label);
    for (int i = 0; i < n; i++)
        printf(" %d", v[i]);
    printf("\n");
}

static int golden_run(const char *path, const char *text_key, const void *tok,
                      golden_tokenize_fn fn) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    struct {
        char name[48];
        int compared, mismatches;
    } cat[GOLDEN_MAX_CATEGORIES];
    int n_cat = 0, total_bad = 0, lineno = 0;
    long tokens = 0, bytes = 0;
    double secs = 0;
    static char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        json_error_t jerr;
        json_t *row = json_loads(line, JSON_ALLOW_NUL, &jerr);
        cr_assert_not_null(row, "%s:%d: %s", path, lineno, jerr.text);
        const char *category = json_string_value(json_object_get(row, "category"));
        json_t *text = json_object_get(row, text_key), *jids = json_object_get(row, "ids");
        json_t *jmask = json_object_get(row, "mask");
        cr_assert(category && json_is_string(text) && json_is_array(jids), "%s:%d: bad row", path,
                  lineno);
        int len = (int)json_array_size(jids);
        cr_assert(len > 0 && len <= GOLDEN_MAX_LEN);
        int32_t want[GOLDEN_MAX_LEN], got[GOLDEN_MAX_LEN];
        uint8_t want_mask[GOLDEN_MAX_LEN], got_mask[GOLDEN_MAX_LEN];
        for (int i = 0; i < len; i++) {
            want[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
            want_mask[i] =
                jmask ? (uint8_t)json_integer_value(json_array_get(jmask, (size_t)i)) : 0;
        }
        dalle_error err = {0};
        int n_real = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        dalle_status s = fn(tok, json_string_value(text), json_string_length(text), len, got,
                            got_mask, &n_real, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        tokens += n_real;
        bytes += (long)json_string_length(text);
        int bad = s != DALLE_OK || memcmp(want, got, (size_t)len * sizeof *got) ||
                  (jmask && memcmp(want_mask, got_mask, (size_t)len));
        int c = 0;
        while (c < n_cat && strcmp(cat[c].name, category))
            c++;
        if (c == n_cat) {
            cr_assert(n_cat < GOLDEN_MAX_CATEGORIES);
            snprintf(cat[n_cat].name, sizeof cat[n_cat].name, "%s", category);
            cat[n_cat].compared = cat[n_cat].mismatches = 0;
            n_cat++;
        }
        cat[c].compared++;
        cat[c].mismatches += bad;
        if (bad && total_bad++ < GOLDEN_SHOW) {
            char *esc = json_dumps(text, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
            printf("  MISMATCH %s:%d [%s] %s (%s)\n", path, lineno, category, esc,
                   s == DALLE_OK ? "ids differ" : err.msg);
            free(esc);
            golden_print_ids("want", want, len);
            golden_print_ids("got ", got, len);
        }
        json_decref(row);
    }
    fclose(f);
    printf("%s\n  %-20s %8s %10s\n", path, "category", "compared", "mismatches");
    int all = 0;
    for (int c = 0; c < n_cat; c++) {
        printf("  %-20s %8d %10d\n", cat[c].name, cat[c].compared, cat[c].mismatches);
        all += cat[c].compared;
    }
    printf("  %-20s %8d %10d\n", "total", all, total_bad);
    printf("  %ld tokens from %ld bytes in %.1f ms: %.2f M tokens/s, %.1f MB/s (one thread)\n",
           tokens, bytes, 1e3 * secs, tokens / secs / 1e6, bytes / secs / 1e6);
    fflush(stdout);
    return total_bad;
}

#define TMP_MAX_FILES 32

static char tmp_dir[64];
static char tmp_files[TMP_MAX_FILES][128];
static int tmp_n_files;

static const char *tmp_write(const char *name, const char *content) {
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/dalle_tok_test_XXXXXX");
        cr_assert_not_null(mkdtemp(tmp_dir));
    }
    cr_assert_lt(tmp_n_files, TMP_MAX_FILES);
    char *path = tmp_files[tmp_n_files++];
    snprintf(path, sizeof tmp_files[0], "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(content, f);
    fclose(f);
    return path;
}

static void tmp_cleanup(void) {
    for (int i = 0; i < tmp_n_files; i++)
        unlink(tmp_files[i]);
    if (tmp_dir[0])
        rmdir(tmp_dir);
    tmp_n_files = 0;
    tmp_dir[0] = 0;
}

#endif /* DALLE_TESTS_TEXT_TOKENIZER_TEST_H */
