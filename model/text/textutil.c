/* textutil.c — byte buffer, UTF-8 and embedded-table helpers (see textutil.h). */
#include "model/text/textutil.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

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

size_t dalle_utf8_len(unsigned char c) {
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

bool dalle_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xF4 ? dalle_utf8_len(c) : 0;
        if (len == 0 || i + len > n)
            return false;
        uint32_t cp = c & (0xFF >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

uint32_t dalle_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[*i];
    size_t len = dalle_utf8_len(c);
    DALLE_ASSERT(*i + len <= n);
    uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; k++)
        cp = cp << 6 | (u[*i + k] & 0x3F);
    *i += len;
    return cp;
}

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

dalle_kv dalle_kv_open(const unsigned char *start, const unsigned char *end) {
    DALLE_ASSERT(end - start >= 8 && memcmp(start, "DKV1", 4) == 0);
    dalle_kv kv = {.offs = start + 8, .count = rd32(start + 4)};
    kv.blob = kv.offs + 4 * ((size_t)kv.count * 2 + 1);
    DALLE_ASSERT(kv.blob <= end && kv.blob + rd32(kv.blob - 4) == end);
    return kv;
}

static const char *kv_slot(const dalle_kv *kv, size_t slot, size_t *n) {
    uint32_t a = rd32(kv->offs + 4 * slot), b = rd32(kv->offs + 4 * (slot + 1));
    *n = b - a;
    return (const char *)kv->blob + a;
}

const char *dalle_kv_key(const dalle_kv *kv, size_t i, size_t *n) {
    return kv_slot(kv, 2 * i, n);
}

const char *dalle_kv_value(const dalle_kv *kv, size_t i, size_t *n) {
    return kv_slot(kv, 2 * i + 1, n);
}

static int bytes_cmp(const char *a, size_t an, const void *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

size_t dalle_kv_lower_bound(const dalle_kv *kv, const void *key, size_t n) {
    size_t lo = 0, hi = kv->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, kn;
        const char *k = dalle_kv_key(kv, mid, &kn);
        if (bytes_cmp(k, kn, key, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool dalle_kv_get(const dalle_kv *kv, const void *key, size_t n, const char **val, size_t *vn) {
    size_t i = dalle_kv_lower_bound(kv, key, n), kn;
    if (i == kv->count)
        return false;
    const char *k = dalle_kv_key(kv, i, &kn);
    if (kn != n || memcmp(k, key, n) != 0)
        return false;
    *val = dalle_kv_value(kv, i, vn);
    return true;
}
