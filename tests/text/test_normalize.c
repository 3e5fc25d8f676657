/* test_normalize.c — the C normaliser against dalle-mini's TextNormalizer.
 *
 * Parity: every prompt of tests/golden/text/prompts.jsonl, normalised with the tiny word
 * file, must equal the "normalized" field of tests/golden/text/normalized.jsonl (written
 * by tools/reference/gen_text_golden.py). A table of comparisons and mismatches per
 * category is printed. Unit tests pin each step on hand-made examples (expected values
 * from the Python normaliser).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/text/normalize.h"

#define PROMPTS "tests/golden/text/prompts.jsonl"
#define GOLDEN "tests/golden/text/normalized.jsonl"
#define WIKI "models/tiny/enwiki-words-frequency.txt"

static dalle_normalizer *with_words, *without_words;

static void setup(void) {
    dalle_error err = {0};
    cr_assert_eq(dalle_normalizer_new(&with_words, WIKI, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_normalizer_new(&without_words, NULL, &err), DALLE_OK, "%s", err.msg);
}

static void teardown(void) {
    dalle_normalizer_free(with_words);
    dalle_normalizer_free(without_words);
}

TestSuite(normalize, .init = setup, .fini = teardown);

static char *norm_n(const dalle_normalizer *nz, const char *s, size_t n) {
    char *out = NULL;
    dalle_error err = {0};
    cr_assert_eq(dalle_text_normalize(nz, s, n, &out, &err), DALLE_OK, "%s", err.msg);
    return out;
}

#define CHECK(nz, in, want)                                                              \
    do {                                                                                 \
        char *got_ = norm_n(nz, in, strlen(in));                                         \
        cr_expect_str_eq(got_, want, "normalize(\"%s\")", in);                           \
        free(got_);                                                                      \
    } while (0)

/* ---- parity ---------------------------------------------------------------------- */

enum { MAX_CATEGORIES = 64 };

typedef struct {
    char name[64];
    int compared, mismatches;
} category;

static json_t *read_line(FILE *f, char **line, size_t *cap) {
    if (getline(line, cap, f) < 0) return NULL;
    json_error_t je;
    json_t *j = json_loads(*line, JSON_ALLOW_NUL, &je);
    cr_assert_not_null(j, "bad JSON line: %s", je.text);
    return j;
}

Test(normalize, golden_parity, .timeout = 120) {
    FILE *fp = fopen(PROMPTS, "r"), *fg = fopen(GOLDEN, "r");
    cr_assert_not_null(fp, "%s missing (run from the repository root)", PROMPTS);
    cr_assert_not_null(fg, "%s missing", GOLDEN);
    category cats[MAX_CATEGORIES] = {0};
    int ncat = 0, total = 0, failed = 0, shown = 0;
    char *lp = NULL, *lg = NULL;
    size_t cp = 0, cg = 0;
    json_t *jp, *jg;
    while ((jp = read_line(fp, &lp, &cp)) != NULL) {
        jg = read_line(fg, &lg, &cg);
        cr_assert_not_null(jg, "%s is shorter than %s", GOLDEN, PROMPTS);
        const char *cat = json_string_value(json_object_get(jp, "category"));
        json_t *prompt = json_object_get(jp, "prompt");
        const char *want = json_string_value(json_object_get(jg, "normalized"));
        cr_assert(cat && json_is_string(prompt) && want);
        cr_assert(json_equal(prompt, json_object_get(jg, "prompt")), "files out of step at %d",
                  total + 1);
        int c = 0;
        while (c < ncat && strcmp(cats[c].name, cat) != 0) c++;
        if (c == ncat) {
            cr_assert_lt(ncat, MAX_CATEGORIES);
            snprintf(cats[ncat++].name, sizeof cats[0].name, "%s", cat);
        }
        char *got = norm_n(with_words, json_string_value(prompt), json_string_length(prompt));
        cats[c].compared++;
        total++;
        if (strcmp(got, want) != 0) {
            cats[c].mismatches++;
            failed++;
            if (shown++ < 20)
                fprintf(stderr, "MISMATCH [%s] line %d\n  prompt: %s\n  want:  [%s]\n  got:   [%s]\n",
                        cat, total, json_string_value(prompt), want, got);
        }
        free(got);
        json_decref(jp);
        json_decref(jg);
    }
    cr_assert_null(read_line(fg, &lg, &cg), "%s is longer than %s", GOLDEN, PROMPTS);
    free(lp);
    free(lg);
    fclose(fp);
    fclose(fg);
    printf("%-20s %9s %11s\n", "category", "compared", "mismatches");
    for (int c = 0; c < ncat; c++)
        printf("%-20s %9d %11d\n", cats[c].name, cats[c].compared, cats[c].mismatches);
    printf("%-20s %9d %11d\n", "total", total, failed);
    fflush(stdout);
    cr_assert_gt(total, 2000);
    cr_assert_eq(failed, 0, "%d of %d prompts differ from dalle-mini", failed, total);
}
