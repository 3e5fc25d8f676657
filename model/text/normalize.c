/* normalize.c — dalle-mini's TextNormalizer (docs/model-spec.md §4.1; see normalize.h).
 *
 * Unicode stages: ftfy.fix_text, html.unescape twice, emoji.demojize, unidecode. After
 * unidecode the text is ASCII, so every later step is a hand-written scan that gives what
 * Python's re.sub gives (leftmost, non-overlapping, one pass) with Python's classes on
 * ASCII: \w = [A-Za-z0-9_], \d = [0-9], \s = [ \t\n\r\v\f\x1c-\x1f] (str.isspace).
 *
 * Hashtags: with a word-frequency file, "#word" is split by wordninja-style dynamic
 * programming (cost of a word = ln(rank + 1), unknown = +inf, ties go to the shorter
 * last word); without one, "#word" becomes "word" (the word is kept whole).
 * Person tokens: each lone "<person>" becomes " a person " (dalle-mini draws it at random).
 */
#include "model/text/normalize.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/text/emoji.h"
#include "model/text/ftfy.h"
#include "model/text/textutil.h"
#include "model/text/translit.h"

typedef struct {
    size_t off, len; /* key bytes in the file buffer; len 0 = empty slot */
    double cost;
} word_slot;

struct dalle_normalizer {
    char *file;       /* the word-frequency file, NULL when none was given */
    word_slot *slots; /* open addressing, mask + 1 slots */
    size_t mask;
    size_t max_word; /* longest word of the file, in code points */
};

/* ---- word-frequency file ---------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static word_slot *word_find(const dalle_normalizer *nz, const char *w, size_t n) {
    for (size_t i = hash_bytes(w, n) & nz->mask;; i = (i + 1) & nz->mask) {
        word_slot *s = &nz->slots[i];
        if (s->len == 0 || (s->len == n && memcmp(nz->file + s->off, w, n) == 0))
            return s;
    }
}

static double word_cost(const dalle_normalizer *nz, const char *w, size_t n) {
    const word_slot *s = word_find(nz, w, n);
    return s->len ? s->cost : INFINITY;
}

/* Python str.splitlines() boundaries and str.isspace() (split()) characters. */
static bool is_line_break(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) ||
           c == 0x85 || c == 0x2028 || c == 0x2029;
}

static bool is_unicode_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_key_byte(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Reads the file as HashtagProcessor does: line i gives its first whitespace-separated
 * word the cost ln(i + 1); a later duplicate wins. Only words made of [a-z0-9] can ever
 * match (hashtags are lower-case \w+ split on '_'), so only those are stored, but every
 * word counts for max_word. */
static dalle_status load_words(dalle_normalizer *nz, const char *path, dalle_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_error_set(err, DALLE_ERR_IO, "cannot open word file %s", path);
    dalle_sbuf buf = {0};
    char chunk[65536];
    for (size_t got; (got = fread(chunk, 1, sizeof chunk, f)) > 0;)
        dalle_sbuf_put(&buf, chunk, got);
    bool read_err = ferror(f);
    fclose(f);
    size_t n = 0;
    nz->file = dalle_sbuf_finish(&buf, &n);
    if (!nz->file)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "word file %s", path);
    if (read_err)
        return dalle_error_set(err, DALLE_ERR_IO, "cannot read word file %s", path);
    if (!dalle_utf8_valid(nz->file, n))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "word file %s is not UTF-8", path);
    size_t lines = 0;
    for (size_t i = 0; i < n;)
        lines += is_line_break(dalle_utf8_next(nz->file, n, &i));
    size_t cap = 16;
    while (cap < 2 * (lines + 1))
        cap *= 2;
    nz->slots = calloc(cap, sizeof *nz->slots);
    if (!nz->slots)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "word table");
    nz->mask = cap - 1;
    size_t line = 0;
    for (size_t i = 0; i < n; line++) {
        size_t e = i, next = i; /* the line is [i, e); the next one starts at `next` */
        while (next < n) {
            e = next;
            uint32_t c = dalle_utf8_next(nz->file, n, &next);
            if (is_line_break(c)) {
                if (c == '\r' && next < n && nz->file[next] == '\n')
                    next++;
                break;
            }
            e = next;
        }
        size_t word = i, word_end, cps = 0;
        for (size_t k = i; k < e && is_unicode_space(dalle_utf8_next(nz->file, e, &k));)
            word = k;
        for (word_end = word; word_end < e; cps++) {
            size_t k = word_end;
            if (is_unicode_space(dalle_utf8_next(nz->file, e, &k)))
                break;
            word_end = k;
        }
        if (cps == 0)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: line %zu has no word", path,
                                   line + 1);
        i = next;
        if (cps > nz->max_word)
            nz->max_word = cps;
        bool key = true;
        for (size_t b = word; b < word_end; b++)
            key = key && is_key_byte(nz->file[b]);
        if (!key)
            continue;
        word_slot *slot = word_find(nz, nz->file + word, word_end - word);
        *slot = (word_slot){word, word_end - word, log((double)(line + 1))};
    }
    if (line == 0)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "word file %s is empty", path);
    return DALLE_OK;
}

dalle_status dalle_normalizer_new(dalle_normalizer **out, const char *wiki_words_path,
                                  dalle_error *err) {
    *out = NULL;
    dalle_normalizer *nz = calloc(1, sizeof *nz);
    if (!nz)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "normalizer");
    if (wiki_words_path) {
        dalle_status st = load_words(nz, wiki_words_path, err);
        if (st != DALLE_OK) {
            dalle_normalizer_free(nz);
            return st;
        }
    }
    *out = nz;
    return DALLE_OK;
}

void dalle_normalizer_free(dalle_normalizer *nz) {
    if (!nz)
        return;
    free(nz->file);
    free(nz->slots);
    free(nz);
}

/* ---- ASCII steps (Python re semantics) --------------------------------------------- */

static bool is_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_word(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Whether t[i] exists and satisfies pred (out-of-range positions never do). */
#define AT(pred, t, n, i) ((i) < (n) && pred((t)[i]))

static bool starts(const char *t, size_t n, size_t i, const char *lit) {
    size_t m = strlen(lit);
    return i + m <= n && memcmp(t + i, lit, m) == 0;
}

static const char PERSON[] = "<person>";
static const char DOT[] = "xtokxdotxtokx", QUOTE[] = "xtokxquotextokx", SLASH[] = "xtokxslashxtokx";

typedef void (*step_fn)(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o);

static void lower(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n; i++)
        dalle_sbuf_putc(o, t[i] >= 'A' && t[i] <= 'Z' ? t[i] + 32 : t[i]);
}

/* <person>([,\s]*(and)*[,\s]*<person>)+ -> " people "; then each <person> -> " a person ".
 * The gap between two tokens is in [,\s]*(and)*[,\s]* exactly when the greedy scan
 * below reaches the next token (the gap's parts use disjoint characters). */
static void person_tokens(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    const size_t P = sizeof PERSON - 1;
    dalle_sbuf mid = {0};
    for (size_t i = 0; i < n;) {
        if (starts(t, n, i, PERSON)) {
            size_t q = i + P, more = 0;
            for (;;) {
                size_t r = q;
                while (r < n && (t[r] == ',' || is_space(t[r])))
                    r++;
                while (starts(t, n, r, "and"))
                    r += 3;
                while (r < n && (t[r] == ',' || is_space(t[r])))
                    r++;
                if (!starts(t, n, r, PERSON))
                    break;
                q = r + P;
                more++;
            }
            if (more) {
                dalle_sbuf_put(&mid, " people ", 8);
                i = q;
                continue;
            }
        }
        dalle_sbuf_putc(&mid, t[i++]);
    }
    for (size_t i = 0; i < mid.len;) {
        if (starts(mid.p, mid.len, i, PERSON)) {
            dalle_sbuf_put(o, " a person ", 10);
            i += P;
        } else {
            dalle_sbuf_putc(o, mid.p[i++]);
        }
    }
    o->oom |= mid.oom;
    dalle_sbuf_free(&mid);
}

/* \A\s*\[\d+\] -> "", then \[\d+\]\s*\Z -> "". */
static void wiki_ref(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    size_t b = 0, e;
    while (AT(is_space, t, n, b))
        b++;
    if (b < n && t[b] == '[') {
        size_t d = b + 1;
        while (AT(is_digit, t, n, d))
            d++;
        if (d > b + 1 && d < n && t[d] == ']')
            t += d + 1, n -= d + 1;
    }
    e = n;
    while (e > 0 && is_space(t[e - 1]))
        e--;
    if (e >= 3 && t[e - 1] == ']') {
        size_t d = e - 1;
        while (d > 0 && is_digit(t[d - 1]))
            d--;
        if (d < e - 1 && d > 0 && t[d - 1] == '[')
            n = d - 1;
    }
    dalle_sbuf_put(o, t, n);
}

/* <[^<]+?> -> " ". */
static void html_tags(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n;) {
        if (t[i] == '<' && i + 1 < n && t[i + 1] != '<') {
            size_t j = i + 2; /* t[i + 1] is the first character of [^<]+? */
            while (j < n && t[j] != '>' && t[j] != '<')
                j++;
            if (j < n && t[j] == '>') {
                dalle_sbuf_putc(o, ' ');
                i = j + 1;
                continue;
            }
        }
        dalle_sbuf_putc(o, t[i++]);
    }
}

/* http\S+ -> "". */
static void urls(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n;) {
        if (starts(t, n, i, "http") && i + 4 < n && !is_space(t[i + 4])) {
            for (i += 4; i < n && !is_space(t[i]);)
                i++;
            continue;
        }
        dalle_sbuf_putc(o, t[i++]);
    }
}

/* (\d),(\d{3}) -> \1\2. */
static void comma_numbers(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n;) {
        if (is_digit(t[i]) && i + 4 < n && t[i + 1] == ',' && is_digit(t[i + 2]) &&
            is_digit(t[i + 3]) && is_digit(t[i + 4])) {
            dalle_sbuf_putc(o, t[i]);
            dalle_sbuf_put(o, t + i + 2, 3);
            i += 5;
            continue;
        }
        dalle_sbuf_putc(o, t[i++]);
    }
}

/* (cls)sep(cls) -> \1 repl \2, one pass. */
static void between(const char *t, size_t n, dalle_sbuf *o, bool (*cls)(char), char sep,
                    const char *repl) {
    for (size_t i = 0; i < n;) {
        if (cls(t[i]) && i + 2 < n && t[i + 1] == sep && cls(t[i + 2])) {
            dalle_sbuf_putc(o, t[i]);
            dalle_sbuf_put(o, repl, strlen(repl));
            dalle_sbuf_putc(o, t[i + 2]);
            i += 3;
            continue;
        }
        dalle_sbuf_putc(o, t[i++]);
    }
}

static void protect_dots(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    between(t, n, o, is_word, '.', DOT);
}

static void protect_dates(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    between(t, n, o, is_digit, '/', SLASH);
}

static void word_hyphens(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    between(t, n, o, is_word, '-', " ");
}

/* '(?=([stdm]|(ll)|(re)|(ve)|(ll))\b) -> xtokxquotextokx. */
static void protect_quotes(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n; i++) {
        bool one = i + 1 < n && t[i + 1] && strchr("stdm", t[i + 1]) && !AT(is_word, t, n, i + 2);
        bool two =
            (starts(t, n, i + 1, "ll") || starts(t, n, i + 1, "re") || starts(t, n, i + 1, "ve")) &&
            !AT(is_word, t, n, i + 3);
        if (t[i] == '\'' && (one || two))
            dalle_sbuf_put(o, QUOTE, sizeof QUOTE - 1);
        else
            dalle_sbuf_putc(o, t[i]);
    }
}

/* Each character of `set` -> repl. */
static void map_chars(const char *t, size_t n, dalle_sbuf *o, const char *set, const char *repl) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] && strchr(set, t[i]))
            dalle_sbuf_put(o, repl, strlen(repl));
        else
            dalle_sbuf_putc(o, t[i]);
    }
}

/* ([%&\/$*]) -> " \1 ". */
static void space_symbols(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n; i++) {
        bool sym = t[i] && strchr("%&/$*", t[i]);
        if (sym)
            dalle_sbuf_putc(o, ' ');
        dalle_sbuf_putc(o, t[i]);
        if (sym)
            dalle_sbuf_putc(o, ' ');
    }
}

/* HashtagProcessor._split on s[0..m) ([a-z0-9] only): appends the words, each preceded
 * by a space unless *first. Returns false on allocation failure. */
static bool split_words(const dalle_normalizer *nz, const char *s, size_t m, dalle_sbuf *o,
                        bool *first) {
    double *cost = malloc((m + 1) * sizeof *cost);
    size_t *len = malloc((m + 1) * sizeof *len);     /* best last-word length ending at i */
    size_t *start = malloc((m + 1) * sizeof *start); /* backtracked words, right to left */
    bool ok = cost && len && start;
    if (ok) {
        cost[0] = 0;
        for (size_t i = 1; i <= m; i++) {
            size_t kmax = i < nz->max_word ? i : nz->max_word;
            for (size_t k = 1; k <= kmax; k++) {
                double c = cost[i - k] + word_cost(nz, s + i - k, k);
                if (k == 1 || c < cost[i]) {
                    cost[i] = c;
                    len[i] = k;
                }
            }
        }
        /* A word that ends with a digit joins a following word that starts with one. */
        size_t nw = 0;
        for (size_t i = m; i > 0; i -= len[i]) {
            size_t b = i - len[i];
            if (nw > 0 && is_digit(s[i - 1]) && is_digit(s[start[nw - 1]]))
                start[nw - 1] = b;
            else
                start[nw++] = b;
        }
        for (size_t w = nw; w-- > 0;) { /* word w is [start[w], start[w - 1]) */
            size_t end = w > 0 ? start[w - 1] : m;
            if (!*first)
                dalle_sbuf_putc(o, ' ');
            dalle_sbuf_put(o, s + start[w], end - start[w]);
            *first = false;
        }
    }
    free(cost);
    free(len);
    free(start);
    return ok;
}

/* #(\w+) -> the word split into words (HashtagProcessor: pieces between runs of
 * [^a-zA-Z0-9'] — here only '_' — each split on its own, all joined by one space), or
 * the word itself without a word-frequency file. */
static void hashtags(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (t[i] == '#' && AT(is_word, t, n, j))
            j++;
        if (t[i] != '#' || j == i + 1) {
            dalle_sbuf_putc(o, t[i++]);
            continue;
        }
        if (!nz->file) {
            dalle_sbuf_put(o, t + i + 1, j - i - 1);
        } else {
            bool first = true;
            for (size_t b = i + 1; b < j;) {
                size_t e = b;
                while (e < j && t[e] != '_')
                    e++;
                if (!split_words(nz, t + b, e - b, o, &first))
                    o->oom = true;
                for (b = e; b < j && t[b] == '_';)
                    b++;
            }
        }
        i = j;
    }
}

static void ignore_chars(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    map_chars(t, n, o, "_#\\", " ");
}

static void simplify_quotes(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    map_chars(t, n, o, "'\"`", " \" ");
}

static void punctuation(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    map_chars(t, n, o, "()[].,|:;?!=+~-/{}", ",");
}

/* Every occurrence of lit -> repl, left to right. */
static void replace_all(const char *t, size_t n, dalle_sbuf *o, const char *lit, char repl) {
    for (size_t i = 0; i < n;) {
        if (starts(t, n, i, lit)) {
            dalle_sbuf_putc(o, repl);
            i += strlen(lit);
        } else {
            dalle_sbuf_putc(o, t[i++]);
        }
    }
}

static void restore_dots(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    replace_all(t, n, o, DOT, '.');
}

static void restore_quotes(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    replace_all(t, n, o, QUOTE, '\'');
}

static void restore_slashes(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    replace_all(t, n, o, SLASH, '/');
}

/* (\D)(\1{3,}) -> \1. */
static void repeating_chars(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && t[j] == t[i])
            j++;
        dalle_sbuf_putc(o, t[i]);
        i = !is_digit(t[i]) && j - i >= 4 ? j : i + 1;
    }
}

/* (\s*C+\s*)+ -> repl: a whitespace run followed by C, and everything after it made of
 * C and whitespace, is one match. */
static void merge_runs(const char *t, size_t n, dalle_sbuf *o, char c, const char *repl) {
    for (size_t i = 0; i < n;) {
        size_t q = i;
        while (AT(is_space, t, n, q))
            q++;
        if (q < n && t[q] == c) {
            while (q < n && (t[q] == c || is_space(t[q])))
                q++;
            dalle_sbuf_put(o, repl, strlen(repl));
        } else {
            q += q == i;
            dalle_sbuf_put(o, t + i, q - i);
        }
        i = q;
    }
}

static void merge_quotes(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    merge_runs(t, n, o, '"', " \" ");
}

static void merge_commas(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    merge_runs(t, n, o, ',', ", ");
}

/* \s+ -> " ". */
static void collapse_spaces(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    for (size_t i = 0; i < n; i++) {
        if (!is_space(t[i]))
            dalle_sbuf_putc(o, t[i]);
        else if (i == 0 || !is_space(t[i - 1]))
            dalle_sbuf_putc(o, ' ');
    }
}

/* strip, drop one trailing ',', drop one leading ',', strip; then prepend one space. */
static void strip_commas(const dalle_normalizer *nz, const char *t, size_t n, dalle_sbuf *o) {
    (void)nz;
    size_t b = 0, e = n;
    while (b < e && is_space(t[b]))
        b++;
    while (e > b && is_space(t[e - 1]))
        e--;
    if (e > b && t[e - 1] == ',')
        e--;
    if (e > b && t[b] == ',')
        b++;
    while (b < e && is_space(t[b]))
        b++;
    while (e > b && is_space(t[e - 1]))
        e--;
    dalle_sbuf_putc(o, ' ');
    dalle_sbuf_put(o, t + b, e - b);
}

/* TextNormalizer.__call__ after unidecode, in order. */
static const step_fn ASCII_STEPS[] = {
    lower,         person_tokens, wiki_ref,        html_tags,       urls,
    comma_numbers, comma_numbers, protect_dots,    protect_quotes,  protect_dates,
    word_hyphens,  space_symbols, hashtags,        ignore_chars,    simplify_quotes,
    punctuation,   restore_dots,  restore_quotes,  restore_slashes, repeating_chars,
    merge_quotes,  merge_commas,  collapse_spaces, strip_commas,
};

/* One Unicode stage: text -> malloc'd text, NULL on allocation failure. */
typedef char *(*unicode_fn)(const char *text, size_t n, size_t *out_len);

dalle_status dalle_text_normalize(const dalle_normalizer *nz, const char *text, size_t n,
                                  char **out, dalle_error *err) {
    DALLE_ASSERT(nz);
    *out = NULL;
    if (!text && n)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "prompt is NULL");
    if (!dalle_utf8_valid(text ? text : "", n))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "prompt is not valid UTF-8");
    static const unicode_fn UNICODE_STAGES[] = {dalle_ftfy_fix_text, dalle_html_unescape,
                                                dalle_html_unescape, dalle_emoji_demojize,
                                                dalle_translit_text};
    dalle_sbuf cur = {0};
    dalle_sbuf_put(&cur, text, n);
    for (size_t s = 0; s < sizeof UNICODE_STAGES / sizeof *UNICODE_STAGES && !cur.oom; s++) {
        size_t len = 0;
        char *next = UNICODE_STAGES[s](cur.p ? cur.p : "", cur.len, &len);
        dalle_sbuf_free(&cur);
        cur = (dalle_sbuf){.p = next, .len = len, .cap = len + 1, .oom = next == NULL};
    }
    for (size_t s = 0; s < sizeof ASCII_STEPS / sizeof *ASCII_STEPS && !cur.oom; s++) {
        dalle_sbuf next = {0};
        ASCII_STEPS[s](nz, cur.p ? cur.p : "", cur.len, &next);
        dalle_sbuf_free(&cur);
        cur = next;
    }
    *out = dalle_sbuf_finish(&cur, NULL);
    return *out ? DALLE_OK : dalle_error_set(err, DALLE_ERR_NOMEM, "normalizing a prompt");
}
