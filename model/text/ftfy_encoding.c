/* ftfy_encoding.c — ftfy 6.3.1's fix_encoding (see ftfy_encoding.h).
 *
 * One step, repeated until the text stops changing:
 *   1. ASCII text, and text that ftfy's "badness" regex does not flag, is left alone.
 *   2. For each single-byte encoding in ftfy's order that can encode the whole text:
 *      encode it; put back 0xA0 bytes that became spaces (restore_byte_a0, not for
 *      MacRoman); in the sloppy encodings turn UTF-8 sequences that lost a byte into
 *      U+FFFD (replace_lossy_sequences); decode as UTF-8 (with CESU-8 pairs and Java's
 *      C0 80 allowed when a byte ED or C0 occurs). The first encoding that decodes wins.
 *   3. Else each run of embedded UTF-8 mojibake that the detector regex finds is fixed on
 *      its own, if it is shorter than the text and looks bad (decode_inconsistent_utf8).
 *   4. Else text that Latin-1 can encode is re-read as strict Windows-1252 if that decodes
 *      and changes it (ftfy's check for "also Windows-1252" never succeeds, because its
 *      list holds sloppy-windows-1252).
 *   5. Else C1 controls are read as Windows-1252.
 * The regular expressions are ftfy's own, compiled by tools/text/gen_tables.py into
 * programs for the backtracking VM below (data/ftfy_regex.bin), which keeps Python's match
 * priority; the code pages come from Python's codecs (data/ftfy_charmaps.bin).
 * Text is handled as arrays of code points, and bytes as arrays of byte values.
 */
#include "model/text/ftfy_encoding.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

DALLE_EMBED(ftfy_regex_bin, "model/text/data/ftfy_regex.bin");
DALLE_EMBED(ftfy_charmaps_bin, "model/text/data/ftfy_charmaps.bin");

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- growable arrays of code points or byte values ------------------------------------ */

typedef struct {
    uint32_t *v;
    size_t n, cap;
    bool oom;
} vec;

static void vec_push(vec *a, uint32_t x) {
    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static void vec_append(vec *a, const uint32_t *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        vec_push(a, x[i]);
}

static void vec_free(vec *a) {
    free(a->v);
    *a = (vec){0};
}

static bool vec_eq(const vec *a, const vec *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* ---- regex VM ---------------------------------------------------------------------- */

enum { CLASS, NCLASS, ANY, BOL, EOL, EOS, SPLIT, JMP, NOT_AHEAD, NOT_BEHIND, MATCH };
enum { RX_BADNESS, RX_DETECTOR, RX_ALTERED, RX_LOSSY, RX_A_GRAVE, RX_COUNT };

typedef struct {
    const unsigned char *starts, *class_off, *code, *ranges;
    uint32_t nclass, ncode, nranges;
} regex_set;

static regex_set regex_open(void) {
    const unsigned char *p = ftfy_regex_bin;
    DALLE_ASSERT(memcmp(p, "DRX1", 4) == 0 && rd32(p + 4) == RX_COUNT);
    regex_set rx = {.starts = p + 8};
    p = rx.starts + 4 * RX_COUNT;
    rx.nclass = rd32(p);
    rx.class_off = p + 4;
    p = rx.class_off + 4 * ((size_t)rx.nclass + 1);
    rx.ncode = rd32(p);
    rx.code = p + 4;
    p = rx.code + 4 * (size_t)rx.ncode;
    rx.nranges = rd32(p);
    rx.ranges = p + 4;
    DALLE_ASSERT(rx.ranges + 8 * (size_t)rx.nranges == ftfy_regex_bin_end);
    return rx;
}

static bool in_class(const regex_set *rx, uint32_t k, uint32_t c) {
    DALLE_ASSERT(k < rx->nclass);
    size_t lo = rd32(rx->class_off + 4 * k), hi = rd32(rx->class_off + 4 * (k + 1));
    while (lo < hi) { /* first range whose upper end is >= c */
        size_t mid = lo + (hi - lo) / 2;
        if (rd32(rx->ranges + 8 * mid + 4) < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rd32(rx->class_off + 4 * (k + 1)) && rd32(rx->ranges + 8 * lo) <= c;
}

/* Runs the program at pc from t[pos]; returns the match end or -1. Choice points go on
 * `stack` (pairs pc, pos), so the first alternative is always explored first, as in sre. */
static ptrdiff_t vm_run(const regex_set *rx, uint32_t pc, const uint32_t *t, size_t n, size_t pos,
                        vec *stack, bool *oom) {
    stack->n = 0;
    for (;;) {
        DALLE_ASSERT(pc < rx->ncode);
        uint32_t w = rd32(rx->code + 4 * (size_t)pc), op = w & 0xFF, a = w >> 8;
        bool ok = true;
        switch (op) {
        case CLASS:
        case NCLASS:
            ok = pos < n && in_class(rx, a, t[pos]) == (op == CLASS);
            pos++;
            pc++;
            break;
        case ANY:
            ok = pos < n && t[pos] != '\n';
            pos++;
            pc++;
            break;
        case BOL:
            ok = pos == 0;
            pc++;
            break;
        case EOL:
            ok = pos == n || (pos + 1 == n && t[pos] == '\n');
            pc++;
            break;
        case EOS:
            ok = pos == n;
            pc++;
            break;
        case SPLIT:
            vec_push(stack, rd32(rx->code + 4 * ((size_t)pc + 1)));
            vec_push(stack, (uint32_t)pos);
            pc = a;
            break;
        case JMP: pc = a; break;
        case NOT_AHEAD:
        case NOT_BEHIND: {
            uint32_t width = op == NOT_BEHIND ? rd32(rx->code + 4 * ((size_t)pc + 1)) : 0;
            vec sub = {0};
            if (op == NOT_AHEAD)
                ok = vm_run(rx, pc + 1, t, n, pos, &sub, oom) < 0;
            else
                ok = pos < width ||
                     vm_run(rx, pc + 2, t, n, pos - width, &sub, oom) != (ptrdiff_t)pos;
            vec_free(&sub);
            pc = a;
            break;
        }
        case MATCH: return (ptrdiff_t)pos;
        default: DALLE_ASSERT(!"bad regex opcode");
        }
        if (stack->oom) {
            *oom = true;
            return -1;
        }
        if (!ok) {
            if (stack->n == 0)
                return -1;
            pos = stack->v[--stack->n];
            pc = stack->v[--stack->n];
        }
    }
}

/* Leftmost match of program `prog` in t at or after `from`: [*s, *e). */
static bool rx_search(const regex_set *rx, int prog, const uint32_t *t, size_t n, size_t from,
                      size_t *s, size_t *e, bool *oom) {
    vec stack = {0};
    bool found = false;
    for (size_t p = from; p <= n && !found && !*oom; p++) {
        ptrdiff_t end = vm_run(rx, rd32(rx->starts + 4 * (size_t)prog), t, n, p, &stack, oom);
        if (end >= 0) {
            *s = p;
            *e = (size_t)end;
            found = true;
        }
    }
    vec_free(&stack);
    return found;
}

typedef void (*replace_fn)(const uint32_t *m, size_t mn, size_t whole_n, vec *out, bool *oom);

/* re.sub(prog, replace, t): matches are replaced left to right, without overlap. */
static void rx_sub(const regex_set *rx, int prog, const vec *t, vec *out, replace_fn replace,
                   bool *oom) {
    size_t pos = 0, s, e;
    while (rx_search(rx, prog, t->v, t->n, pos, &s, &e, oom)) {
        DALLE_ASSERT(e > s); /* ftfy's patterns never match empty text */
        vec_append(out, t->v + pos, s - pos);
        replace(t->v + s, e - s, t->n, out, oom);
        pos = e;
    }
    vec_append(out, t->v + pos, t->n - pos);
}

static bool is_bad(const regex_set *rx, const uint32_t *t, size_t n, bool *oom) {
    size_t s, e;
    return rx_search(rx, RX_BADNESS, t, n, 0, &s, &e, oom);
}

/* ---- code pages ------------------------------------------------------------------------ */

enum {
    NAME_LEN = 24,
    SLOPPY = 1,
    NO_RESTORE_A0 = 2,
    N_TRIED = 10,
    LATIN1 = 0,
    SLOPPY_1252 = 1,
    STRICT_1252 = 10,
    UNDEFINED = 0xFFFFFFFF
};

typedef struct {
    const unsigned char *decode, *pairs;
    uint32_t flags, npairs;
} charmap;

static charmap charmap_get(size_t which) {
    const unsigned char *p = ftfy_charmaps_bin;
    DALLE_ASSERT(memcmp(p, "DCM1", 4) == 0 && which < rd32(p + 4));
    p += 8;
    for (size_t i = 0;; i++) {
        charmap m = {.flags = rd32(p + NAME_LEN), .decode = p + NAME_LEN + 4};
        m.npairs = rd32(m.decode + 4 * 256);
        m.pairs = m.decode + 4 * 256 + 4;
        if (i == which)
            return m;
        p = m.pairs + 8 * (size_t)m.npairs;
        DALLE_ASSERT(p < ftfy_charmaps_bin_end);
    }
}

static bool charmap_encode(const charmap *m, uint32_t cp, uint32_t *byte) {
    size_t lo = 0, hi = m->npairs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t c = rd32(m->pairs + 8 * mid);
        if (c == cp) {
            *byte = rd32(m->pairs + 8 * mid + 4);
            return true;
        }
        if (c < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static uint32_t charmap_decode(const charmap *m, uint32_t byte) {
    return rd32(m->decode + 4 * (size_t)byte);
}

/* text.encode(encoding) when every character can be encoded (possible_encoding). */
static bool encode_all(const charmap *m, const vec *t, vec *out) {
    for (size_t i = 0; i < t->n; i++) {
        uint32_t b;
        if (!charmap_encode(m, t->v[i], &b))
            return false;
        vec_push(out, b);
    }
    return true;
}

/* ---- UTF-8 decoders over byte values ----------------------------------------------------- */

static bool utf8_strict(const uint32_t *b, size_t n, vec *out) {
    if (n == 0)
        return true;
    char *s = malloc(n);
    if (!s) {
        out->oom = true;
        return false;
    }
    for (size_t i = 0; i < n; i++)
        s[i] = (char)b[i];
    bool ok = dalle_utf8_valid(s, n);
    for (size_t i = 0; ok && i < n;)
        vec_push(out, dalle_utf8_next(s, n, &i));
    free(s);
    return ok;
}

static bool at_dollar(const uint32_t *b, size_t n, size_t q) {
    return q == n || (q + 1 == n && b[q] == '\n');
}

static bool in_range(const uint32_t *b, size_t n, size_t q, uint32_t lo, uint32_t hi) {
    return q < n && b[q] >= lo && b[q] <= hi;
}

/* Where ftfy's utf-8-variants decoder takes over from the plain one: C0 (80|$) or
 * ED ([A0-BF]|$)([80-BF]|$) ($ = end, or before a final '\n'). */
static bool variant_at(const uint32_t *b, size_t n, size_t p) {
    if (b[p] == 0xC0)
        return (p + 1 < n && b[p + 1] == 0x80) || at_dollar(b, n, p + 1);
    if (b[p] != 0xED)
        return false;
    size_t q = p + 1;
    if (in_range(b, n, q, 0xA0, 0xBF))
        q++;
    else if (!at_dollar(b, n, q))
        return false;
    return in_range(b, n, q, 0x80, 0xBF) || at_dollar(b, n, q);
}

/* ftfy's "utf-8-variants": UTF-8, plus CESU-8 surrogate pairs and C0 80 for U+0000. */
static bool utf8_variants(const uint32_t *b, size_t n, vec *out) {
    for (size_t pos = 0; pos < n;) {
        size_t p = pos;
        while (p < n && !variant_at(b, n, p))
            p++;
        if (!utf8_strict(b + pos, p - pos, out))
            return false;
        if (p == n)
            break;
        if (b[p] == 0xC0 && p + 1 < n) {
            vec_push(out, 0);
            pos = p + 2;
        } else if (b[p] == 0xED && n - p >= 6 && in_range(b, n, p + 1, 0xA0, 0xAF) &&
                   in_range(b, n, p + 2, 0x80, 0xBF) && b[p + 3] == 0xED &&
                   in_range(b, n, p + 4, 0xB0, 0xBF) && in_range(b, n, p + 5, 0x80, 0xBF)) {
            vec_push(out, 0x10000 + ((b[p + 1] & 0x0F) << 16) + ((b[p + 2] & 0x3F) << 10) +
                              ((b[p + 4] & 0x0F) << 6) + (b[p + 5] & 0x3F));
            pos = p + 6;
        } else {
            return false;
        }
    }
    return true;
}

/* ---- the byte-level transcoders ---------------------------------------------------------- */

static void replace_a_grave(const uint32_t *m, size_t mn, size_t whole_n, vec *out, bool *oom) {
    (void)m, (void)mn, (void)whole_n, (void)oom;
    static const uint32_t fixed[] = {0xC3, 0xA0, 0x20};
    vec_append(out, fixed, 3);
}

static void replace_altered(const uint32_t *m, size_t mn, size_t whole_n, vec *out, bool *oom) {
    (void)whole_n, (void)oom;
    for (size_t i = 0; i < mn; i++)
        vec_push(out, m[i] == 0x20 ? 0xA0 : m[i]);
}

static void replace_lossy(const uint32_t *m, size_t mn, size_t whole_n, vec *out, bool *oom) {
    (void)m, (void)mn, (void)whole_n, (void)oom;
    static const uint32_t fffd[] = {0xEF, 0xBF, 0xBD};
    vec_append(out, fffd, 3);
}

/* Step 2 for one code page, given the encoded text; false when the bytes do not decode. */
static bool decode_as_utf8(const regex_set *rx, const charmap *m, vec *bytes, vec *out, bool *oom) {
    vec tmp = {0};
    size_t s, e;
    if (!(m->flags & NO_RESTORE_A0) &&
        rx_search(rx, RX_ALTERED, bytes->v, bytes->n, 0, &s, &e, oom)) {
        rx_sub(rx, RX_A_GRAVE, bytes, &tmp, replace_a_grave, oom);
        bytes->n = 0;
        rx_sub(rx, RX_ALTERED, &tmp, bytes, replace_altered, oom);
        tmp.n = 0;
    }
    if (m->flags & SLOPPY) {
        rx_sub(rx, RX_LOSSY, bytes, &tmp, replace_lossy, oom);
        vec t = *bytes;
        *bytes = tmp;
        tmp = t;
    }
    vec_free(&tmp);
    bool variants = false;
    for (size_t i = 0; i < bytes->n; i++)
        variants |= bytes->v[i] == 0xED || bytes->v[i] == 0xC0;
    *oom |= bytes->oom;
    return !*oom && (variants ? utf8_variants(bytes->v, bytes->n, out)
                              : utf8_strict(bytes->v, bytes->n, out));
}

static void fix_encoding_text(const regex_set *rx, const uint32_t *t, size_t n, vec *out,
                              bool *oom);

static void replace_embedded(const uint32_t *m, size_t mn, size_t whole_n, vec *out, bool *oom) {
    const regex_set rx = regex_open();
    if (mn < whole_n && is_bad(&rx, m, mn, oom))
        fix_encoding_text(&rx, m, mn, out, oom);
    else
        vec_append(out, m, mn);
}

/* One step of fix_encoding: the next text into out (a copy when nothing applies). */
static void fix_step(const regex_set *rx, const vec *t, vec *out, bool *oom) {
    bool ascii = true;
    for (size_t i = 0; i < t->n; i++)
        ascii &= t->v[i] < 0x80;
    if (t->n == 0 || ascii || !is_bad(rx, t->v, t->n, oom)) {
        vec_append(out, t->v, t->n);
        return;
    }
    bool latin1 = false;
    for (size_t i = 0; i < N_TRIED && !*oom; i++) {
        charmap m = charmap_get(i);
        vec bytes = {0};
        bool possible = encode_all(&m, t, &bytes);
        latin1 |= possible && i == LATIN1;
        bool fixed = possible && decode_as_utf8(rx, &m, &bytes, out, oom);
        vec_free(&bytes);
        if (fixed)
            return;
        out->n = 0;
    }
    size_t s, e;
    if (rx_search(rx, RX_DETECTOR, t->v, t->n, 0, &s, &e, oom)) {
        rx_sub(rx, RX_DETECTOR, t, out, replace_embedded, oom);
        if (!vec_eq(out, t))
            return;
        out->n = 0;
    }
    if (latin1) { /* text.encode("latin-1").decode("windows-1252") */
        charmap w = charmap_get(STRICT_1252);
        bool defined = true;
        for (size_t i = 0; i < t->n && defined; i++) {
            uint32_t c = charmap_decode(&w, t->v[i]);
            defined = c != UNDEFINED;
            vec_push(out, c);
        }
        if (defined && !vec_eq(out, t))
            return;
        out->n = 0;
    }
    charmap w = charmap_get(SLOPPY_1252); /* fix_c1_controls */
    for (size_t i = 0; i < t->n; i++)
        vec_push(out, t->v[i] >= 0x80 && t->v[i] <= 0x9F ? charmap_decode(&w, t->v[i]) : t->v[i]);
}

static void fix_encoding_text(const regex_set *rx, const uint32_t *t, size_t n, vec *out,
                              bool *oom) {
    vec cur = {0};
    vec_append(&cur, t, n);
    for (;;) {
        vec next = {0};
        fix_step(rx, &cur, &next, oom);
        *oom |= next.oom || cur.oom;
        bool same = *oom || vec_eq(&next, &cur);
        vec_free(&cur);
        cur = next;
        if (same)
            break;
    }
    vec_append(out, cur.v, cur.n);
    vec_free(&cur);
}

void dalle_ftfy_fix_encoding(dalle_sbuf *out, const char *t, size_t n) {
    regex_set rx = regex_open();
    vec text = {0}, fixed = {0};
    for (size_t i = 0; i < n;)
        vec_push(&text, dalle_utf8_next(t, n, &i));
    bool oom = text.oom;
    if (!oom)
        fix_encoding_text(&rx, text.v, text.n, &fixed, &oom);
    oom |= fixed.oom;
    for (size_t i = 0; i < fixed.n && !oom; i++)
        dalle_sbuf_put_cp(out, fixed.v[i]);
    out->oom |= oom;
    vec_free(&text);
    vec_free(&fixed);
}
