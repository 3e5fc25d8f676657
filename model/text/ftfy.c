/* ftfy.c — ftfy 6.3.1 fix_text() with its default options, and Python's html.unescape
 * (see ftfy.h).
 *
 * fix_text cuts the text after each "\n" (and every 1,000,000 code points) and fixes each
 * segment until nothing changes, applying in this order: HTML entities (only while no
 * segment so far contained '<'), mojibake repair (fix_encoding, in ftfy_encoding.c), C1
 * controls read as Windows-1252, Latin ligatures, half/full-width forms, curly quotes,
 * line breaks, ANSI terminal escapes, control characters, NFC.
 *
 * NOT implemented: fix_surrogates (valid UTF-8 cannot hold surrogates) and ftfy's
 * explanations / plans. Unicode data comes from utf8proc (Unicode 15 for 2.8) where Python
 * 3.11 uses 14.0, so characters new in 15 may normalise differently.
 *
 * Tables (tools/text/gen_tables.py): html5.kv (html.entities.html5), charref.kv (numeric
 * reference exceptions), ftfy_upper.kv (ftfy's "&EACUTE;" entities), ftfy_translate.kv (the
 * four character-for-text fixes composed).
 */
#include "model/text/ftfy.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/text/ftfy_encoding.h"
#include "model/text/textutil.h"

DALLE_EMBED(html5_kv, "model/text/data/html5.kv");
DALLE_EMBED(charref_kv, "model/text/data/charref.kv");
DALLE_EMBED(ftfy_upper_kv, "model/text/data/ftfy_upper.kv");
DALLE_EMBED(ftfy_translate_kv, "model/text/data/ftfy_translate.kv");

enum { MAX_SEGMENT_CPS = 1000000, MAX_NAME_CPS = 32, MAX_ENTITY_ALNUM = 24 };

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int hex_value(char c) {
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ---- html.unescape -------------------------------------------------------------- */

/* A numeric reference's replacement, as html._replace_charref gives it. */
static void put_charref(dalle_sbuf *out, uint32_t num) {
    if (num <= 0x10FFFF) {
        dalle_kv kv = dalle_kv_open(charref_kv, charref_kv_end);
        char key[16];
        int kn = snprintf(key, sizeof key, "%u", (unsigned)num);
        const char *v;
        size_t vn;
        if (dalle_kv_get(&kv, key, (size_t)kn, &v, &vn)) {
            dalle_sbuf_put(out, v, vn);
            return;
        }
    }
    dalle_sbuf_put_cp(out, (num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF ? 0xFFFD : num);
}

/* Parses the digits of a numeric reference at t[*i] (base 10 or 16), saturating above
 * U+10FFFF, and advances *i past them and an optional ';'. */
static uint32_t parse_charref(const char *t, size_t n, size_t *i, int base) {
    uint32_t num = 0;
    for (int d;
         *i < n && (d = base == 10 ? (is_digit(t[*i]) ? t[*i] - '0' : -1) : hex_value(t[*i])) >= 0;
         ++*i)
        num = num > 0x10FFFF ? num : num * (uint32_t)base + (uint32_t)d;
    if (*i < n && t[*i] == ';')
        ++*i;
    return num;
}

/* The named reference "&" + t[0..n) (n > 0): the whole name, else its longest known
 * prefix of at least 2 code points followed by the rest, else unchanged. */
static void put_named(dalle_sbuf *out, const char *t, size_t n) {
    dalle_kv kv = dalle_kv_open(html5_kv, html5_kv_end);
    const char *v;
    size_t vn;
    if (dalle_kv_get(&kv, t, n, &v, &vn)) {
        dalle_sbuf_put(out, v, vn);
        return;
    }
    size_t cut[MAX_NAME_CPS + 2], ncp = 0; /* cut[x] = bytes in the first x code points */
    for (size_t i = 0; i < n; i += dalle_utf8_len((unsigned char)t[i]))
        cut[ncp++] = i;
    cut[ncp] = n;
    for (size_t x = ncp - 1; x >= 2 && x < ncp; x--) {
        if (dalle_kv_get(&kv, t, cut[x], &v, &vn)) {
            dalle_sbuf_put(out, v, vn);
            dalle_sbuf_put(out, t + cut[x], n - cut[x]);
            return;
        }
    }
    dalle_sbuf_putc(out, '&');
    dalle_sbuf_put(out, t, n);
}

static bool name_char(char c) {
    return !strchr("\t\n\f <&#;", c) || c == '\0';
}

/* Python's html.unescape into out. */
static void html_unescape_into(dalle_sbuf *out, const char *t, size_t n) {
    for (size_t i = 0; i < n;) {
        if (t[i] != '&') {
            dalle_sbuf_putc(out, t[i++]);
            continue;
        }
        size_t j = i + 1;
        if (j < n && t[j] == '#') {
            if (j + 1 < n && is_digit(t[j + 1])) {
                i = j + 1;
                put_charref(out, parse_charref(t, n, &i, 10));
                continue;
            }
            if (j + 2 < n && (t[j + 1] == 'x' || t[j + 1] == 'X') && hex_value(t[j + 2]) >= 0) {
                i = j + 2;
                put_charref(out, parse_charref(t, n, &i, 16));
                continue;
            }
            dalle_sbuf_putc(out, t[i++]);
            continue;
        }
        size_t k = j, cps = 0;
        while (k < n && cps < MAX_NAME_CPS && name_char(t[k])) {
            k += dalle_utf8_len((unsigned char)t[k]);
            cps++;
        }
        if (cps == 0) {
            dalle_sbuf_putc(out, t[i++]);
            continue;
        }
        if (k < n && t[k] == ';')
            k++;
        put_named(out, t + j, k - j);
        i = k;
    }
}

char *dalle_html_unescape(const char *text, size_t n, size_t *out_len) {
    dalle_sbuf out = {0};
    if (!dalle_utf8_valid(text, n))
        return NULL;
    html_unescape_into(&out, text, n);
    return dalle_sbuf_finish(&out, out_len);
}

/* ---- fix_text ------------------------------------------------------------------- */

/* ftfy's unescape_html: "&name;" / "&#num;" with 1..24 ASCII letters or digits; names
 * from html5 (those ending in ';') or ftfy's upper-case list; numeric references only
 * when html.unescape consumes the ';'. */
static void ftfy_unescape(dalle_sbuf *out, const char *t, size_t n) {
    dalle_kv html5 = dalle_kv_open(html5_kv, html5_kv_end);
    dalle_kv upper = dalle_kv_open(ftfy_upper_kv, ftfy_upper_kv_end);
    for (size_t i = 0; i < n;) {
        size_t k = i + 1, run = 0;
        bool hash = false;
        if (t[i] == '&') {
            hash = k < n && t[k] == '#';
            k += hash;
            while (k + run < n && is_alnum(t[k + run]))
                run++;
        }
        if (run == 0 || run > MAX_ENTITY_ALNUM || k + run >= n || t[k + run] != ';') {
            dalle_sbuf_putc(out, t[i++]);
            continue;
        }
        size_t end = k + run + 1;
        const char *v;
        size_t vn;
        if (!hash && (dalle_kv_get(&html5, t + i + 1, end - i - 1, &v, &vn) ||
                      dalle_kv_get(&upper, t + i + 1, end - i - 1, &v, &vn))) {
            dalle_sbuf_put(out, v, vn);
        } else if (hash) {
            dalle_sbuf ref = {0};
            html_unescape_into(&ref, t + i, end - i);
            if (!ref.oom && (ref.len == 0 || !memchr(ref.p, ';', ref.len)))
                dalle_sbuf_put(out, ref.p, ref.len);
            else
                dalle_sbuf_put(out, t + i, end - i);
            out->oom |= ref.oom;
            dalle_sbuf_free(&ref);
        } else {
            dalle_sbuf_put(out, t + i, end - i);
        }
        i = end;
    }
}

static bool is_removed_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static bool is_decimal(uint32_t c) {
    return c < 0x80 ? is_digit((char)c)
                    : utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* Length of an ANSI escape "\033[" (digit|;)* letter at t[i], or 0. */
static size_t terminal_escape_len(const char *t, size_t n, size_t i) {
    if (t[i] != '\033' || i + 1 >= n || t[i + 1] != '[')
        return 0;
    size_t j = i + 2;
    while (j < n) {
        size_t k = j;
        uint32_t c = dalle_utf8_next(t, n, &k);
        if (c != ';' && !is_decimal(c))
            break;
        j = k;
    }
    bool letter = j < n && ((t[j] >= 'a' && t[j] <= 'z') || (t[j] >= 'A' && t[j] <= 'Z'));
    return letter ? j + 1 - i : 0;
}

/* ftfy's character fixers of one iteration, in its order: C1 controls, ligatures, width
 * and quotes (one composed table) with line breaks in a first pass (the table neither
 * makes nor takes '\r', '\n', U+2028 or U+2029), then terminal escapes and control
 * characters in a second pass over that result. */
static void fix_chars(dalle_sbuf *out, const char *t, size_t n) {
    dalle_kv tr = dalle_kv_open(ftfy_translate_kv, ftfy_translate_kv_end);
    dalle_sbuf mid = {0};
    for (size_t i = 0; i < n;) {
        size_t start = i;
        uint32_t c = dalle_utf8_next(t, n, &i);
        const char *v;
        size_t vn;
        if (c >= 0x80 && dalle_kv_get(&tr, t + start, i - start, &v, &vn))
            dalle_sbuf_put(&mid, v, vn);
        else if (c == '\r' && i < n && t[i] == '\n')
            continue;                                     /* "\r\n" -> "\n": the '\n' follows */
        else if (c == '\r' || c == 0x2028 || c == 0x2029) /* U+0085 became '…' above */
            dalle_sbuf_putc(&mid, '\n');
        else
            dalle_sbuf_put(&mid, t + start, i - start);
    }
    for (size_t i = 0; i < mid.len;) {
        size_t esc = terminal_escape_len(mid.p, mid.len, i);
        if (esc) {
            i += esc;
            continue;
        }
        size_t start = i;
        uint32_t c = dalle_utf8_next(mid.p, mid.len, &i);
        if (!is_removed_control(c))
            dalle_sbuf_put(out, mid.p + start, i - start);
    }
    out->oom |= mid.oom;
    dalle_sbuf_free(&mid);
}

/* One segment, fixed until it stops changing. Returns false on allocation failure. */
static bool fix_segment(dalle_sbuf *out, const char *seg, size_t n, bool unescape) {
    dalle_sbuf cur = {0};
    dalle_sbuf_put(&cur, seg, n);
    for (;;) {
        dalle_sbuf a = {0}, b = {0}, c = {0};
        if (unescape)
            ftfy_unescape(&a, cur.p, cur.len);
        else
            dalle_sbuf_put(&a, cur.p, cur.len);
        dalle_ftfy_fix_encoding(&b, a.p ? a.p : "", a.len);
        fix_chars(&c, b.p, b.len);
        c.oom |= a.oom || b.oom;
        dalle_sbuf_free(&a);
        dalle_sbuf_free(&b);
        b = c;
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nn = -1;
        if (!b.oom && !cur.oom)
            nn = utf8proc_map((const utf8proc_uint8_t *)(b.len ? b.p : ""), (utf8proc_ssize_t)b.len,
                              &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        dalle_sbuf_free(&b);
        if (nn < 0) {
            dalle_sbuf_free(&cur);
            return false;
        }
        bool same = (size_t)nn == cur.len && (nn == 0 || memcmp(nfc, cur.p, cur.len) == 0);
        dalle_sbuf_free(&cur);
        dalle_sbuf_put(&cur, nfc, (size_t)nn);
        free(nfc);
        if (same)
            break;
    }
    dalle_sbuf_put(out, cur.p, cur.len);
    bool ok = !cur.oom;
    dalle_sbuf_free(&cur);
    return ok;
}

char *dalle_ftfy_fix_text(const char *text, size_t n, size_t *out_len) {
    if (!dalle_utf8_valid(text, n))
        return NULL;
    dalle_sbuf out = {0};
    bool unescape = true; /* "auto": until a segment contains '<' */
    for (size_t pos = 0; pos < n;) {
        size_t end = pos, cps = 0;
        while (end < n && cps < MAX_SEGMENT_CPS) {
            char c = text[end];
            end += dalle_utf8_len((unsigned char)c);
            cps++;
            if (c == '\n')
                break;
        }
        if (memchr(text + pos, '<', end - pos))
            unescape = false;
        if (!fix_segment(&out, text + pos, end - pos, unescape))
            out.oom = true;
        pos = end;
    }
    return dalle_sbuf_finish(&out, out_len);
}
