/* pretokenize.c — UTF-8 decoding and the GPT-2 and CLIP pre-tokenizer patterns as
 * hand-written matchers (see pretokenize.h). */
#include "pretokenize.h"

#include <string.h>
#include <utf8proc.h>

enum { CC_LETTER, CC_NUMBER, CC_SPACE, CC_OTHER };

static int char_class(uint32_t c) {
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CC_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CC_NUMBER;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return CC_SPACE;
    default: return (c >= 0x09 && c <= 0x0D) || c == 0x85 ? CC_SPACE : CC_OTHER;
    }
}

int dalle_utf8_decode(const char *text, size_t n, uint32_t *cp, uint32_t *off) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    int k = 0;
    while (i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t len = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &c);
        if (len <= 0)
            return -1;
        if (off)
            off[k] = (uint32_t)i;
        cp[k++] = (uint32_t)c;
        i += (size_t)len;
    }
    if (off)
        off[k] = (uint32_t)n;
    return k;
}

size_t dalle_utf8_encode(const uint32_t *cp, int n, char *out, uint32_t *off) {
    size_t len = 0;
    for (int k = 0; k < n; k++) {
        if (off)
            off[k] = (uint32_t)len;
        len += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp[k], (utf8proc_uint8_t *)out + len);
    }
    if (off)
        off[n] = (uint32_t)len;
    return len;
}

static int run_end(const uint32_t *cp, int n, int i, int cls) {
    while (i < n && char_class(cp[i]) == cls)
        i++;
    return i;
}

/* Length of the contraction 's 't 're 've 'm 'll 'd at cp[i] (which is '\''), or 0.
 * fold maps a code point to the letter it matches. */
static int contraction(const uint32_t *cp, int n, int i, uint32_t (*fold)(uint32_t)) {
    if (i + 1 >= n)
        return 0;
    uint32_t a = fold(cp[i + 1]), b = i + 2 < n ? fold(cp[i + 2]) : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

static uint32_t fold_none(uint32_t c) {
    return c;
}

int dalle_pretok_gpt2_match(const uint32_t *cp, int n, int i) {
    if (cp[i] == '\'') {
        int k = contraction(cp, n, i, fold_none);
        if (k)
            return i + k;
    }
    int cls = char_class(cp[i]);
    if (cls != CC_SPACE)
        return run_end(cp, n, i, cls);
    if (cp[i] == ' ' && i + 1 < n && char_class(cp[i + 1]) != CC_SPACE)
        return run_end(cp, n, i + 1, char_class(cp[i + 1]));
    /* \s+(?!\S): the run, less its last space when a non-space follows; else \s+ */
    int e = run_end(cp, n, i, CC_SPACE);
    return e < n && e - i >= 2 ? e - 1 : e;
}

/* Simple case folding, as far as the CLIP pattern's literals need it: ASCII, and U+017F
 * (long s), which matches 's' case-insensitively. */
static uint32_t fold_clip(uint32_t c) {
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    return c == 0x17F ? 's' : c;
}

static int clip_class(uint32_t c) {
    return c == 0x345 ? CC_SPACE : char_class(c);
}

static int clip_run_end(const uint32_t *cp, int n, int i, int cls) {
    while (i < n && clip_class(cp[i]) == cls)
        i++;
    return i;
}

static const char *const clip_specials[2] = {"<start_of_text>", "<end_of_text>"};

static int literal_at(const uint32_t *cp, int n, int i, const char *lit) {
    for (; *lit; lit++, i++)
        if (i >= n || fold_clip(cp[i]) != (uint8_t)*lit)
            return 0;
    return 1;
}

int dalle_pretok_clip_next(const uint32_t *cp, int n, int *start, int *special) {
    *special = -1;
    for (int i = *start; i < n; i++) {
        *start = i;
        if (cp[i] == '<')
            for (int s = 0; s < 2; s++)
                if (literal_at(cp, n, i, clip_specials[s])) {
                    *special = s;
                    return i + (int)strlen(clip_specials[s]);
                }
        if (cp[i] == '\'') {
            int k = contraction(cp, n, i, fold_clip);
            if (k)
                return i + k;
        }
        switch (clip_class(cp[i])) {
        case CC_LETTER: return clip_run_end(cp, n, i, CC_LETTER);
        case CC_NUMBER: return i + 1;
        case CC_OTHER: return clip_run_end(cp, n, i, CC_OTHER);
        default: break; /* spaces (and U+0345) are not matched */
        }
    }
    return -1;
}
