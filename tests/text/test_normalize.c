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
#include <unistd.h>

#include "model/text/emoji.h"
#include "model/text/normalize.h"
#include "model/text/translit.h"

#define PROMPTS "tests/golden/text/prompts.jsonl"
#define GOLDEN  "tests/golden/text/normalized.jsonl"
#define WIKI    "models/tiny/enwiki-words-frequency.txt"

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

#define CHECK(nz, in, want)                                                                        \
    do {                                                                                           \
        char *got_ = norm_n(nz, in, strlen(in));                                                   \
        cr_expect_str_eq(got_, want, "normalize(\"%s\")", in);                                     \
        free(got_);                                                                                \
    } while (0)

/* ---- parity ---------------------------------------------------------------------- */

enum { MAX_CATEGORIES = 64 };

typedef struct {
    char name[64];
    int compared, mismatches;
} category;

static json_t *read_line(FILE *f, char **line, size_t *cap) {
    if (getline(line, cap, f) < 0)
        return NULL;
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
        while (c < ncat && strcmp(cats[c].name, cat) != 0)
            c++;
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
                fprintf(stderr,
                        "MISMATCH [%s] line %d\n  prompt: %s\n  want:  [%s]\n  got:   [%s]\n", cat,
                        total, json_string_value(prompt), want, got);
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

/* ---- contract ---------------------------------------------------------------------- */

Test(normalize, empty_and_blank_give_one_space) {
    CHECK(with_words, "", " ");
    CHECK(with_words, "   ", " ");
    char *out = norm_n(with_words, NULL, 0);
    cr_expect_str_eq(out, " ");
    free(out);
}

Test(normalize, invalid_utf8_is_rejected) {
    static const char *bad[] = {"\xff",    "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = (char *)1;
        dalle_error err = {0};
        cr_expect_eq(dalle_text_normalize(with_words, bad[i], strlen(bad[i]), &out, &err),
                     DALLE_ERR_INVALID_ARG, "case %zu", i);
        cr_expect_null(out);
        cr_expect_eq(err.status, DALLE_ERR_INVALID_ARG);
    }
}

Test(normalize, embedded_nul_is_input_not_terminator) {
    char *out = norm_n(with_words, "a\0b", 3);
    cr_expect_str_eq(out, " ab"); /* ftfy removes U+0000 */
    free(out);
}

/* ---- Unicode stages ------------------------------------------------------------------ */

Test(normalize, ftfy_html_emoji_unidecode) {
    CHECK(with_words, "Tom &amp;amp; Jerry &lt;3", " tom & jerry <3");
    CHECK(with_words,
          "\xe2\x80\x9c"
          "curly"
          "\xe2\x80\x9d \xe2\x80\x98q\xe2\x80\x99",
          " \" curly \" q \"");
    CHECK(with_words, "\xef\xbc\xac\xef\xbc\xaf\xef\xbc\xb5\xef\xbc\xa4", " loud");
    CHECK(with_words, "\xef\xac\x81ne", " fine");
    CHECK(with_words,
          "a\xc2\x85"
          "b",
          " a, b"); /* U+0085 read as Windows-1252 '…' */
    CHECK(with_words, "a\x1b[31mred\x1b[0m", " ared");
    CHECK(with_words, "&#0;", " ");
    CHECK(with_words, "caf\xc3\xa9 \xc3\x86 \xc3\x9f \xe5\x8c\x97\xe4\xba\xac",
          " cafe ae ss bei jing");
    CHECK(with_words,
          "\xf0\x9f\x98\x80 \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd "
          "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9",
          " grinning face, thumbs up medium skin tone, man, woman");
}

Test(normalize, translit_and_demojize_directly) {
    size_t n;
    const char *in = "\xc3\x85ngstr\xc3\xb6m \xe2\x84\xa2 \xf0\x9d\x90\x80 \xf3\xb0\x80\x80";
    char *s = dalle_translit_text(in, strlen(in), &n);
    cr_expect_str_eq(s, "Angstrom (tm) A "); /* U+F0000 (private use) has no data */
    cr_expect_eq(n, strlen(s));
    free(s);
    in = "x\xef\xb8\x8f \xf0\x9f\x87\xab\xf0\x9f\x87\xb7";
    s = dalle_emoji_demojize(in, strlen(in), &n);
    cr_expect_str_eq(s, "x :France:"); /* a stray U+FE0F is dropped */
    free(s);
}

/* ---- ASCII steps, one hand example each ---------------------------------------------- */

Test(normalize, single_pass_hyphens) {
    CHECK(with_words, "a-b-c", " a b, c");
    CHECK(with_words, "a-b-c-d", " a b, c d");
}

Test(normalize, person_tokens) {
    CHECK(with_words, "<person> and <person> at the beach", " people at the beach");
    CHECK(with_words, "<person>, <person>,and <person>", " people");
    CHECK(with_words, "photo of <PERSON>", " photo of a person");
    CHECK(with_words, "<person>and and<person>", " a person and and a person");
}

Test(normalize, wiki_refs_tags_urls) {
    CHECK(with_words, "[12] a cat [3]", " a cat");
    CHECK(with_words, "a <b>bold</b> cat", " a bold cat");
    CHECK(with_words, "see http://x.com/a now", " see now");
}

Test(normalize, numbers_dots_quotes_dates) {
    CHECK(with_words, "1,000,000 stars", " 1000000 stars");
    CHECK(with_words, "1,0000", " 10000");
    CHECK(with_words, "a.b.c", " a.b, c");
    CHECK(with_words, "it's don't we'll 'quoted'", " it's don't we'll \" quoted \"");
    CHECK(with_words, "12/25/2020", " 12/25/2020");
}

Test(normalize, special_and_ignored_chars) {
    CHECK(with_words, "50% off & $5 * 2", " 50 % off & $ 5 * 2");
    CHECK(with_words, "snake_case #x \\y", " snake case x y");
    CHECK(with_words, "a \"b\" `c`", " a \" b \" c \"");
    CHECK(with_words, "(a) [b] {c} | d: e; f? g! h = i + j ~ k",
          " a, b, c, d, e, f, g, h, i, j, k");
}

Test(normalize, repeats_merges_spaces_strip) {
    CHECK(with_words, "soooooo cute!!!!!! 11111", " so cute, 11111");
    CHECK(with_words, "VIII viiii", " viii vi");
    CHECK(with_words, "a \" \" b", " a \" b");
    CHECK(with_words, "a , , b", " a, b");
    CHECK(with_words, "a \t\n b", " a b");
    CHECK(with_words,
          "a\xc2\xa0"
          "b",
          " a b");
    CHECK(with_words, ", a ,", " a");
}

Test(normalize, hashtags_with_word_file) {
    CHECK(with_words, "#BeautifulDay", " beautiful day");
    CHECK(with_words, "#summer2021vibes", " summer 2021 v i b e s");
    CHECK(with_words, "#a_b", " a b");
    CHECK(with_words, "#tag1", " tag 1");
}

Test(normalize, hashtags_without_word_file_stay_whole) {
    CHECK(without_words, "#BeautifulDay", " beautifulday");
    CHECK(without_words, "#summer2021vibes", " summer2021vibes");
    CHECK(without_words, "#a_b", " a b");
}

Test(normalize, word_file_errors) {
    dalle_normalizer *nz = (dalle_normalizer *)1;
    dalle_error err = {0};
    cr_expect_eq(dalle_normalizer_new(&nz, "tests/golden/text/no-such-file.txt", &err),
                 DALLE_ERR_IO);
    cr_expect_null(nz);
    char path[] = "/tmp/dalle_words_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("the 10\n\nof 5\n", f); /* a blank line: Python's l.split()[0] fails there */
    fclose(f);
    cr_expect_eq(dalle_normalizer_new(&nz, path, &err), DALLE_ERR_FORMAT);
    f = fopen(path, "w");
    fclose(f);
    cr_expect_eq(dalle_normalizer_new(&nz, path, &err), DALLE_ERR_FORMAT, "empty file");
    remove(path);
}
