/* sbuf.c — the growable byte buffer (see sbuf.h). */
#include "common/sbuf.h"

#include <stdlib.h>
#include <string.h>

static bool sbuf_reserve(dalle_sbuf *b, size_t extra) {
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void dalle_sbuf_put(dalle_sbuf *b, const void *s, size_t n) {
    if (n == 0 || !sbuf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void dalle_sbuf_putc(dalle_sbuf *b, char c) {
    if (!sbuf_reserve(b, 1))
        return;
    b->p[b->len++] = c;
}

void dalle_sbuf_put_cp(dalle_sbuf *b, uint32_t cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    dalle_sbuf_put(b, u, n);
}

char *dalle_sbuf_finish(dalle_sbuf *b, size_t *out_len) {
    char *p = NULL;
    if (sbuf_reserve(b, 0)) {
        b->p[b->len] = '\0';
        p = b->p;
        if (out_len)
            *out_len = b->len;
    } else {
        free(b->p);
    }
    *b = (dalle_sbuf){0};
    return p;
}

void dalle_sbuf_free(dalle_sbuf *b) {
    free(b->p);
    *b = (dalle_sbuf){0};
}
