/* weights.c — one-allocation weight upload (see weights.h). */
#include "model_loader/weights.h"

#include <stdarg.h>
#include <string.h>

#define WEIGHT_ALIGN        256
#define DALLE_LITTLE_ENDIAN (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

void dalle_binder_init(dalle_binder *b, dalle_backend *be) {
    memset(b, 0, sizeof *b);
    b->be = be;
}

/* Record that the file tensor `name` (shape[0..ndim-1]) goes to *dst, whose shape is the
 * file shape or, for conv_k > 0, the conv layout [Cout, k, k, Cin]; a matmul weight (and
 * every conv weight) is packed when the backend has a packed layout. */
static dalle_status bind(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst, int ndim,
                         const int64_t *shape, int conv_k, int matmul, const char *name,
                         dalle_error *err) {
    DALLE_ASSERT(ndim >= 1 && ndim <= DALLE_MAX_DIMS);

    const dalle_st_tensor *src;
    dalle_status s = dalle_safetensors_take(st, name, ndim, shape, &src, err);
    if (s != DALLE_OK)
        return s;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        dalle_binding *items = realloc(b->items, cap * sizeof *items);
        if (!items)
            return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory binding '%s'", name);
        b->items = items;
        b->cap = cap;
    }
    memset(dst, 0, sizeof *dst);
    dst->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        dst->shape[i] = shape[i];
    if (conv_k > 0) {
        dst->shape[1] = conv_k;
        dst->shape[2] = conv_k;
        dst->shape[3] = shape[1];
    }
    const dalle_backend_ops *op = b->be->ops;
    dst->dtype = op->weight_dtype;
    if (op->keep_16bit && ndim >= 2 && (src->dtype == DALLE_F16 || src->dtype == DALLE_BF16))
        dst->dtype = src->dtype;
    dst->packed = (matmul || conv_k > 0) && op->pack != NULL;
    b->items[b->n++] = (dalle_binding){dst, src, conv_k};
    return DALLE_OK;
}

dalle_status dalle_binder_take(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst, int ndim,
                               const int64_t *shape, dalle_error *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return bind(b, st, dst, ndim, shape, 0, 0, name, err);
}

dalle_status dalle_binder_take_matmul(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst,
                                      int64_t n, int64_t k, dalle_error *err, const char *fmt,
                                      ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const int64_t shape[2] = {n, k};
    return bind(b, st, dst, 2, shape, 0, 1, name, err);
}

dalle_status dalle_binder_take_conv(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst,
                                    int cout, int cin, int k, dalle_error *err, const char *fmt,
                                    ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    DALLE_ASSERT(cout >= 1 && cin >= 1 && k >= 1);
    const int64_t shape[4] = {cout, cin, k, k};
    return bind(b, st, dst, 4, shape, k, 0, name, err);
}

/* dst[o, y, x, i] = src[o, i, y, x]: torch conv [Cout, Cin, k, k] → [Cout, k, k, Cin]. */
static void conv_to_ohwi(float *dst, const float *src, int64_t cout, int64_t cin, int k) {
    const int64_t kk = (int64_t)k * k;
    for (int64_t o = 0; o < cout; o++)
        for (int64_t i = 0; i < cin; i++)
            for (int64_t t = 0; t < kk; t++)
                dst[(o * kk + t) * cin + i] = src[(o * cin + i) * kk + t];
}

/* IEEE binary16 from binary32, round to nearest even (overflow → ±inf, NaN kept). */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u); /* ≥ 65520: rounds to inf */
    if (ax < 0x38800000u) {                /* below 2^-14: subnormal */
        if (ax < 0x33000000u)
            return (uint16_t)sign; /* < 2^-25: ±0 */
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u, e = ax >> 23;
        const uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax - 0x38000000u) >> 13); /* rebias exponent 127 → 15 */
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

/* bfloat16 from binary32, round to nearest even (NaN kept quiet). */
static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* In place: the first n floats of buf become n 16-bit values of dtype (front to back, so
 * each float is read before its bytes are overwritten). */
static void narrow_in_place(void *buf, int64_t n, dalle_dtype dtype) {
    const float *f = buf;
    uint16_t *h = buf;
    for (int64_t i = 0; i < n; i++) {
        const float v = f[i];
        h[i] = dtype == DALLE_F16 ? f32_to_f16(v) : f32_to_bf16(v);
    }
}

/* The bytes of a bound tensor in backend memory: its dtype, packed or not. */
static size_t stored_size(const dalle_backend *be, const dalle_tensor *t) {
    const int64_t n = dalle_tensor_numel(t);
    if (t->packed)
        return be->ops->pack_bytes(t);
    return (size_t)n * dalle_dtype_size(t->dtype);
}

static size_t aligned(size_t bytes) {
    return (bytes + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
}

dalle_status dalle_binder_upload(dalle_binder *b, void **block, dalle_error *err) {
    dalle_backend *be = b->be;
    const dalle_dtype wdt = be->ops->weight_dtype;
    if (wdt != DALLE_F32 && wdt != DALLE_F16 && wdt != DALLE_BF16)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED,
                               "backend %s: weight dtype %s not supported", be->ops->name,
                               dalle_dtype_name(wdt));
    size_t total = 0, largest = 0, largest_packed = 0;
    for (size_t i = 0; i < b->n; i++) {
        const dalle_tensor *t = b->items[i].dst;
        total += aligned(stored_size(be, t));
        const size_t f32_bytes = (size_t)b->items[i].src->numel * sizeof(float); /* staging */
        if (f32_bytes > largest)
            largest = f32_bytes;
        if (t->packed && stored_size(be, t) > largest_packed)
            largest_packed = stored_size(be, t);
    }
    *block = NULL;
    b->bytes = total;
    if (total == 0)
        return DALLE_OK;
    int any_conv = 0;
    for (size_t i = 0; i < b->n; i++)
        any_conv |= b->items[i].conv_k > 0;
    uint8_t *mem = be->ops->alloc(be, total);
    float *host = malloc(largest ? largest : 1);
    float *perm = any_conv ? malloc(largest ? largest : 1) : NULL;
    void *packed = largest_packed ? malloc(largest_packed) : NULL;
    if (!mem || !host || (any_conv && !perm) || (largest_packed && !packed)) {
        free(host);
        free(perm);
        free(packed);
        if (mem)
            be->ops->free(be, mem);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "cannot allocate %zu bytes of weights on %s",
                               total, be->ops->name);
    }
    size_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        const dalle_binding *it = &b->items[i];
        const dalle_st_tensor *src = it->src;
        dalle_tensor *t = it->dst;
        const void *out;
        if (t->dtype == src->dtype && it->conv_k == 0 && DALLE_LITTLE_ENDIAN) {
            out = src->data; /* the file's little-endian bytes are the stored values */
        } else {
            dalle_st_tensor_to_f32(src, host);
            if (it->conv_k > 0)
                conv_to_ohwi(perm, host, src->shape[0], src->shape[1], it->conv_k);
            float *f = it->conv_k > 0 ? perm : host;
            if (t->dtype != DALLE_F32) /* asked for 16 bits: round to nearest even */
                narrow_in_place(f, src->numel, t->dtype);
            out = f;
        }
        if (t->packed) {
            be->ops->pack(packed, out, t);
            out = packed;
        }
        be->ops->to_device(be, mem + off, out, stored_size(be, t));
        t->data = mem + off;
        off += aligned(stored_size(be, t));
    }
    free(host);
    free(perm);
    free(packed);
    /* copies may still be in flight on an asynchronous backend (CUDA): weights are shared by
     * every state, each with its own stream, so they must be complete when this returns */
    be->ops->sync(be);
    *block = mem;
    return DALLE_OK;
}

void dalle_binder_free(dalle_binder *b) {
    free(b->items);
    b->items = NULL;
    b->n = b->cap = 0;
}
