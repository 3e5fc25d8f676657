/* weights.c — one-allocation weight upload (see weights.h). */
#include "model_loader/weights.h"

#include <stdarg.h>
#include <string.h>

#define WEIGHT_ALIGN 256

void dalle_binder_init(dalle_binder *b, dalle_backend *be) {
    memset(b, 0, sizeof *b);
    b->be = be;
}

dalle_status dalle_binder_take(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst, int ndim,
                               const int64_t *shape, dalle_error *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    DALLE_ASSERT(ndim >= 1 && ndim <= DALLE_MAX_DIMS);

    const dalle_st_tensor *src;
    dalle_status s = dalle_safetensors_take(st, name, ndim, shape, &src, err);
    if (s != DALLE_OK) return s;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        dalle_binding *items = realloc(b->items, cap * sizeof *items);
        if (!items) return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory binding '%s'", name);
        b->items = items;
        b->cap = cap;
    }
    memset(dst, 0, sizeof *dst);
    dst->ndim = ndim;
    for (int i = 0; i < ndim; i++) dst->shape[i] = shape[i];
    dst->dtype = b->be->ops->weight_dtype;
    b->items[b->n++] = (dalle_binding){dst, src};
    return DALLE_OK;
}

static size_t aligned_size(const dalle_st_tensor *t, dalle_dtype dtype) {
    size_t bytes = (size_t)t->numel * dalle_dtype_size(dtype);
    return (bytes + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
}

dalle_status dalle_binder_upload(dalle_binder *b, void **block, dalle_error *err) {
    dalle_backend *be = b->be;
    dalle_dtype dtype = be->ops->weight_dtype;
    if (dtype != DALLE_F32)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "backend %s: weight dtype %s not supported",
                               be->ops->name, dalle_dtype_name(dtype));
    size_t total = 0, largest = 0;
    for (size_t i = 0; i < b->n; i++) {
        size_t sz = aligned_size(b->items[i].src, dtype);
        total += sz;
        if (sz > largest) largest = sz;
    }
    *block = NULL;
    if (total == 0) return DALLE_OK;
    uint8_t *mem = be->ops->alloc(be, total);
    float *host = malloc(largest ? largest : 1);
    if (!mem || !host) {
        free(host);
        if (mem) be->ops->free(be, mem);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "cannot allocate %zu bytes of weights on %s", total,
                               be->ops->name);
    }
    size_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        const dalle_st_tensor *src = b->items[i].src;
        dalle_st_tensor_to_f32(src, host);
        be->ops->to_device(be, mem + off, host, (size_t)src->numel * sizeof(float));
        b->items[i].dst->data = mem + off;
        off += aligned_size(src, dtype);
    }
    free(host);
    *block = mem;
    return DALLE_OK;
}

void dalle_binder_free(dalle_binder *b) {
    free(b->items);
    b->items = NULL;
    b->n = b->cap = 0;
}
