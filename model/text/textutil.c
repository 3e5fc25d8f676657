/* textutil.c — UTF-8 and embedded-table helpers (see textutil.h). */
#include "model/text/textutil.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

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
