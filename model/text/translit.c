/* translit.c — unidecode (see translit.h): one table lookup per code point, utf8proc
 * decomposition where the table says "fallback". */
#include "model/text/translit.h"

#include <utf8proc.h>

#include "common/error.h"

DALLE_EMBED(translit_bin, "model/text/data/translit.bin");

enum { SECTIONS = 0xF00, FALLBACK = 0xFFFF, HEADER = 12 };

static uint32_t rd16(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const unsigned char *p) {
    return rd16(p) | rd16(p + 2) << 16;
}

/* The table's string index for cp, or FALLBACK. */
static uint32_t table_entry(uint32_t cp) {
    const unsigned char *t = translit_bin;
    uint32_t block = rd16(t + HEADER + 2 * (cp >> 8));
    if (block == FALLBACK)
        return FALLBACK;
    return rd16(t + HEADER + 2 * SECTIONS + 512 * (size_t)block + 2 * (cp & 0xFF));
}

static void append_string(dalle_sbuf *out, uint32_t idx) {
    const unsigned char *t = translit_bin;
    uint32_t nblocks = rd32(t + 4), nstrings = rd32(t + 8);
    DALLE_ASSERT(idx < nstrings);
    const unsigned char *offs = t + HEADER + 2 * SECTIONS + 512 * (size_t)nblocks;
    const unsigned char *blob = offs + 4 * ((size_t)nstrings + 1);
    uint32_t a = rd32(offs + 4 * idx), b = rd32(offs + 4 * (idx + 1));
    DALLE_ASSERT(blob + b <= translit_bin_end);
    dalle_sbuf_put(out, blob + a, b - a);
}

/* Compatibility decomposition without marks, if it is all ASCII. */
static void append_fold(dalle_sbuf *out, uint32_t cp) {
    utf8proc_int32_t d[32];
    int bound = 0;
    utf8proc_ssize_t n =
        utf8proc_decompose_char((utf8proc_int32_t)cp, d, 32,
                                UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT | UTF8PROC_STRIPMARK, &bound);
    if (n < 0 || n > 32)
        return;
    for (utf8proc_ssize_t i = 0; i < n; i++)
        if (d[i] < 0 || d[i] >= 0x80)
            return;
    for (utf8proc_ssize_t i = 0; i < n; i++)
        dalle_sbuf_putc(out, (char)d[i]);
}

void dalle_translit_append(dalle_sbuf *out, uint32_t cp) {
    if (cp < 0x80) {
        dalle_sbuf_putc(out, (char)cp);
        return;
    }
    if (cp >= (uint32_t)SECTIONS << 8)
        return;
    DALLE_ASSERT(translit_bin_end - translit_bin > HEADER && rd32(translit_bin) == 0x314C5444);
    uint32_t e = table_entry(cp);
    if (e == FALLBACK)
        append_fold(out, cp);
    else
        append_string(out, e);
}

char *dalle_translit_text(const char *text, size_t n, size_t *out_len) {
    dalle_sbuf out = {0};
    for (size_t i = 0; i < n;)
        dalle_translit_append(&out, dalle_utf8_next(text, n, &i));
    return dalle_sbuf_finish(&out, out_len);
}
