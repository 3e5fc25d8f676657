/* clip_tokenizer.c — open_clip's SimpleTokenizer (open_clip 3.x, clean="lower"), as in
 * clip_tokenizer.h.
 *
 * Pipeline: ftfy.fix_text; html.unescape twice; Python str.split()/" ".join (which also
 * strips) with str.isspace's definition of space; Python str.lower(); the CLIP pattern
 * (pretokenize.h); byte symbols with "</w>" on the last one; merges by rank.
 *
 * Lower-casing follows CPython's str.lower(): libutf8proc's simple mappings, plus the only
 * unconditional multi-character one (U+0130 İ → "i̇", i + U+0307) and the Final_Sigma rule
 * for Σ (→ ς at the end of a word, σ elsewhere). The Cased and Case_Ignorable properties are
 * derived from general categories plus the short Other_Lowercase/Other_Uppercase and
 * word-break lists below; characters newer than Python's Unicode (14.0) may differ.
 *
 * The special tokens are open_clip's "<start_of_text>" and "<end_of_text>" (OpenAI's CLIP
 * spelled them "<|startoftext|>"/"<|endoftext|>"); open_clip matches them inside the text
 * too, so a prompt containing "<end_of_text>" gets id 49407 there, and so does ours.
 */
#include "clip_tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bpe.h"
#include "error.h"
#include "ftfy.h"
#include "pretokenize.h"

struct dalle_clip_tokenizer {
    dalle_bpe *bpe;
    int32_t byte_ids[256]; /* symbol of each byte */
    int32_t last_ids[256]; /* the same + "</w>", for a word's last byte */
    int32_t sot, eot;
};

#define EOW "</w>"

/* ---- loading -------------------------------------------------------------------------- */

/* Bytes in the order of their symbols' code points (OpenAI's bytes_to_unicode order). */
static void byte_order(uint8_t order[256]) {
    int k = 0;
    for (int b = 0; b < 256; b++)
        if (dalle_bpe_byte_codepoint((uint8_t)b) == (uint32_t)b)
            order[k++] = (uint8_t)b;
    for (int b = 0; b < 256; b++)
        if (dalle_bpe_byte_codepoint((uint8_t)b) != (uint32_t)b)
            order[k++] = (uint8_t)b;
}

/* ids 0–255: byte symbols; 256–511: the same + "</w>". */
static dalle_status add_byte_symbols(dalle_clip_tokenizer *tok, dalle_error *err) {
    uint8_t order[256];
    byte_order(order);
    dalle_status s = DALLE_OK;
    for (int k = 0; k < 256 && s == DALLE_OK; k++) {
        char sym[2 + sizeof EOW];
        int len = dalle_bpe_byte_symbol(order[k], sym);
        memcpy(sym + len, EOW, sizeof EOW - 1);
        s = dalle_bpe_vocab_set(tok->bpe, sym, (size_t)len, k, err);
        if (s == DALLE_OK)
            s = dalle_bpe_vocab_set(tok->bpe, sym, (size_t)len + sizeof EOW - 1, 256 + k, err);
        tok->byte_ids[order[k]] = k;
        tok->last_ids[order[k]] = 256 + k;
    }
    return s;
}

typedef struct {
    const char *left, *right;
    size_t nl, nr;
} merge_line;

/* The merge lines of the file: the first line is a header; then n_merges lines (≤ 0: all). */
static dalle_status parse_merges(const char *path, const char *buf, size_t n, int n_merges,
                                 merge_line **out, int *count, dalle_error *err) {
    const char *p = buf, *line;
    size_t len;
    int cap = 0, m = 0;
    for (const char *q = buf; q < buf + n; q++)
        cap += *q == '\n';
    if (!dalle_bpe_next_line(&p, buf + n, &line, &len))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: empty merges file", path);
    merge_line *ml = malloc((size_t)(cap + 1) * sizeof *ml);
    if (!ml)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    while ((n_merges <= 0 || m < n_merges) && dalle_bpe_next_line(&p, buf + n, &line, &len)) {
        ml[m].left = line;
        if (!dalle_bpe_split_merge(line, len, &ml[m].nl, &ml[m].right, &ml[m].nr)) {
            free(ml);
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s:%d: expected \"left right\"", path,
                                   m + 2);
        }
        m++;
    }
    if (n_merges > 0 && m < n_merges) {
        free(ml);
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: %d merges, the model needs %d", path, m,
                               n_merges);
    }
    *out = ml;
    *count = m;
    return DALLE_OK;
}

/* Vocabulary as OpenAI builds it: bytes, bytes + </w>, one entry per merge, SOT, EOT (a
 * repeated string keeps its last id, like the Python dict); then the merge ranks. */
static dalle_status build(dalle_clip_tokenizer *tok, const char *path, const merge_line *ml, int m,
                          dalle_error *err) {
    dalle_status s = add_byte_symbols(tok, err);
    char *joined = NULL;
    size_t cap = 0;
    for (int k = 0; s == DALLE_OK && k < m; k++) {
        size_t len = ml[k].nl + ml[k].nr;
        if (len > cap) {
            free(joined);
            cap = 2 * len;
            if (!(joined = malloc(cap)))
                return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
        }
        memcpy(joined, ml[k].left, ml[k].nl);
        memcpy(joined + ml[k].nl, ml[k].right, ml[k].nr);
        s = dalle_bpe_vocab_set(tok->bpe, joined, len, 512 + k, err);
    }
    free(joined);
    tok->sot = 512 + m;
    tok->eot = 513 + m;
    if (s == DALLE_OK)
        s = dalle_bpe_vocab_set(tok->bpe, "<start_of_text>", 15, tok->sot, err);
    if (s == DALLE_OK)
        s = dalle_bpe_vocab_set(tok->bpe, "<end_of_text>", 13, tok->eot, err);
    char where[512];
    for (int k = 0; s == DALLE_OK && k < m; k++) {
        snprintf(where, sizeof where, "%s:%d", path, k + 2);
        s = dalle_bpe_merge_add(tok->bpe, ml[k].left, ml[k].nl, ml[k].right, ml[k].nr, where, err);
    }
    return s;
}

dalle_status dalle_clip_tokenizer_load(dalle_clip_tokenizer **out, const char *merges_path,
                                       int n_merges, dalle_error *err) {
    *out = NULL;
    char *buf;
    size_t n;
    dalle_status s = dalle_bpe_read_file(merges_path, &buf, &n, err);
    if (s != DALLE_OK)
        return s;
    merge_line *ml = NULL;
    int m = 0;
    dalle_clip_tokenizer *tok = NULL;
    s = parse_merges(merges_path, buf, n, n_merges, &ml, &m, err);
    if (s == DALLE_OK && (!(tok = calloc(1, sizeof *tok)) ||
                          !(tok->bpe = dalle_bpe_new(514 + (size_t)m, (size_t)m))))
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    if (s == DALLE_OK)
        s = build(tok, merges_path, ml, m, err);
    free(ml);
    free(buf);
    if (s != DALLE_OK) {
        dalle_clip_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return DALLE_OK;
}

void dalle_clip_tokenizer_free(dalle_clip_tokenizer *tok) {
    if (!tok)
        return;
    dalle_bpe_free(tok->bpe);
    free(tok);
}

int dalle_clip_tokenizer_vocab_size(const dalle_clip_tokenizer *tok) {
    return dalle_bpe_vocab_count(tok->bpe);
}

int32_t dalle_clip_tokenizer_sot(const dalle_clip_tokenizer *tok) {
    return tok->sot;
}
int32_t dalle_clip_tokenizer_eot(const dalle_clip_tokenizer *tok) {
    return tok->eot;
}

/* ---- Python string semantics ---------------------------------------------------------- */

static int category_in(uint32_t c, unsigned mask) {
    return (mask >> utf8proc_category((utf8proc_int32_t)c)) & 1;
}
#define CAT(x) (1u << UTF8PROC_CATEGORY_##x)

/* str.isspace: bidirectional class WS, B or S, or category Zs. */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
           category_in(c, CAT(ZS) | CAT(ZL) | CAT(ZP));
}

static int case_ignorable(uint32_t c) {
    static const uint32_t word_break_mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                              0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                              0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    if (category_in(c, CAT(MN) | CAT(ME) | CAT(CF) | CAT(LM) | CAT(SK)))
        return 1;
    for (size_t k = 0; k < sizeof word_break_mid / sizeof *word_break_mid; k++)
        if (c == word_break_mid[k])
            return 1;
    return 0;
}

static int cased(uint32_t c) {
    /* Other_Lowercase / Other_Uppercase characters that are not case-ignorable */
    static const uint32_t other[][2] = {{0xAA, 0xAA},      {0xBA, 0xBA},       {0x2160, 0x217F},
                                        {0x24B6, 0x24E9},  {0x1F130, 0x1F149}, {0x1F150, 0x1F169},
                                        {0x1F170, 0x1F189}};
    if (category_in(c, CAT(LU) | CAT(LL) | CAT(LT)))
        return 1;
    for (size_t k = 0; k < sizeof other / sizeof *other; k++)
        if (c >= other[k][0] && c <= other[k][1])
            return 1;
    return 0;
}

/* CPython's Final_Sigma test for the Σ at cp[i]. */
static int final_sigma(const uint32_t *cp, int n, int i) {
    int j = i - 1;
    while (j >= 0 && case_ignorable(cp[j]))
        j--;
    if (j < 0 || !cased(cp[j]))
        return 0;
    j = i + 1;
    while (j < n && case_ignorable(cp[j]))
        j++;
    return j == n || !cased(cp[j]);
}

/* str.lower() of cp[0..n) into out (room for 2·n); returns the new length. */
static int py_lower(const uint32_t *cp, int n, uint32_t *out) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (cp[i] == 0x130) {
            out[m++] = 'i';
            out[m++] = 0x307;
        } else if (cp[i] == 0x3A3) {
            out[m++] = final_sigma(cp, n, i) ? 0x3C2 : 0x3C3;
        } else {
            out[m++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp[i]);
        }
    }
    return m;
}

/* " ".join(s.split()) in place; returns the new length. */
static int py_split_join(uint32_t *cp, int n) {
    int m = 0;
    for (int i = 0; i < n;) {
        while (i < n && py_isspace(cp[i]))
            i++;
        if (i == n)
            break;
        if (m > 0)
            cp[m++] = ' ';
        while (i < n && !py_isspace(cp[i]))
            cp[m++] = cp[i++];
    }
    return m;
}

/* ---- tokenizing ----------------------------------------------------------------------- */

/* basic_clean + whitespace_clean + lower of valid UTF-8 text: malloc'd code points. */
static dalle_status clean(const char *text, size_t n, uint32_t **out, int *count,
                          dalle_error *err) {
    size_t n1, n2, n3;
    char *t1 = dalle_ftfy_fix_text(text, n, &n1);
    char *t2 = t1 ? dalle_html_unescape(t1, n1, &n2) : NULL;
    char *t3 = t2 ? dalle_html_unescape(t2, n2, &n3) : NULL;
    uint32_t *cp = t3 && n3 < (size_t)INT32_MAX / 8 ? malloc((n3 + 1) * sizeof *cp) : NULL;
    uint32_t *low = cp ? malloc((2 * n3 + 1) * sizeof *low) : NULL;
    dalle_status s = DALLE_OK;
    int ncp = 0;
    if (!low)
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    else if ((ncp = dalle_utf8_decode(t3, n3, cp, NULL)) < 0)
        s = dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text is not valid UTF-8 after ftfy");
    if (s == DALLE_OK)
        *count = py_lower(cp, py_split_join(cp, ncp), low);
    free(t1);
    free(t2);
    free(t3);
    free(cp);
    if (s != DALLE_OK)
        free(low);
    else
        *out = low;
    return s;
}

/* Content ids of the cleaned code points cp[0..n) into out, at most cap; returns how many
 * or −1 when out of memory. */
static int encode_content(const dalle_clip_tokenizer *tok, const uint32_t *cp, int n, int32_t *out,
                          int cap) {
    char *bytes = malloc(4 * (size_t)n + 1);
    uint32_t *off = malloc(((size_t)n + 1) * sizeof *off);
    void *work = dalle_bpe_work_new(4 * (size_t)n);
    int count = -1;
    if (bytes && off && work) {
        dalle_utf8_encode(cp, n, bytes, off);
        count = 0;
        int start = 0, end, special;
        while (count < cap && (end = dalle_pretok_clip_next(cp, n, &start, &special)) >= 0) {
            if (special >= 0)
                out[count++] = special == 0 ? tok->sot : tok->eot;
            else
                count += dalle_bpe_encode_word(tok->bpe, (const uint8_t *)bytes + off[start],
                                               off[end] - off[start], tok->byte_ids, tok->last_ids,
                                               out + count, cap - count, work);
            start = end;
        }
    }
    free(bytes);
    free(off);
    free(work);
    return count;
}

dalle_status dalle_clip_tokenize(const dalle_clip_tokenizer *tok, const char *text, size_t n,
                                 int ctx, int32_t *ids, int *n_real, dalle_error *err) {
    if (ctx < 2 || !ids || (!text && n))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "bad arguments to the CLIP tokenizer");
    if (n > (size_t)INT32_MAX / 8)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text of %zu bytes is too long", n);
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    if (!cp)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    int valid = dalle_utf8_decode(text ? text : "", n, cp, NULL) >= 0;
    free(cp);
    if (!valid)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text is not valid UTF-8");

    int ncp = 0;
    dalle_status s = clean(text ? text : "", n, &cp, &ncp, err);
    if (s != DALLE_OK)
        return s;
    int count = encode_content(tok, cp, ncp, ids + 1, ctx - 2);
    free(cp);
    if (count < 0)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    ids[0] = tok->sot;
    ids[count + 1] = tok->eot;
    for (int k = count + 2; k < ctx; k++)
        ids[k] = 0;
    if (n_real)
        *n_real = count + 2;
    return DALLE_OK;
}
