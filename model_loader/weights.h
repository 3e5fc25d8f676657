/* weights.h — binds named safetensors tensors to a network's dalle_tensor fields and
 * uploads them into ONE backend allocation, converted to the backend's weight dtype (or
 * kept 16-bit, ops.h keep_16bit) and, for matmul and conv weights, packed (ops.h pack).
 *
 * Contract: dalle_binder_take() checks name and shape (via dalle_safetensors_take) and
 * records where the tensor goes; nothing is copied until dalle_binder_upload(), which
 * allocates the sum of the (256-byte aligned) sizes once, converts (and packs) each tensor
 * on the host and copies it to the device, then points every bound dalle_tensor into that block.
 * The caller owns the returned block and frees it with the backend's free.
 */
#ifndef DALLE_MODEL_LOADER_WEIGHTS_H
#define DALLE_MODEL_LOADER_WEIGHTS_H

#include "common/error.h"
#include "kernels/ops.h"
#include "model_loader/safetensors.h"

typedef struct {
    dalle_tensor *dst;
    const dalle_st_tensor *src;
    int conv_k; /* > 0: a torch conv weight [Cout, Cin, k, k] uploaded as [Cout, k, k, Cin] */
} dalle_binding;

typedef struct {
    dalle_backend *be;
    dalle_binding *items;
    size_t n, cap;
    size_t bytes; /* the block dalle_binder_upload allocated */
} dalle_binder;

void dalle_binder_init(dalle_binder *b, dalle_backend *be);

/* Bind the tensor named by the printf-style format to *dst, expecting shape[0..ndim-1]. */
dalle_status dalle_binder_take(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst, int ndim,
                               const int64_t *shape, dalle_error *err, const char *fmt, ...)
    DALLE_PRINTF(7, 8);

/* Bind a matmul weight [n, k] (ops.h matmul's W): packed when the backend has a layout. */
dalle_status dalle_binder_take_matmul(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst,
                                      int64_t n, int64_t k, dalle_error *err, const char *fmt, ...)
    DALLE_PRINTF(7, 8);

/* Bind a torch Conv2d weight, [cout, cin, k, k] in the file, to *dst as [cout, k, k, cin]
 * (the layout of the ops.h conv2d); the permutation is done on the host during upload. */
dalle_status dalle_binder_take_conv(dalle_binder *b, dalle_safetensors *st, dalle_tensor *dst,
                                    int cout, int cin, int k, dalle_error *err, const char *fmt,
                                    ...) DALLE_PRINTF(8, 9);

dalle_status dalle_binder_upload(dalle_binder *b, void **block, dalle_error *err);

/* In a bind function with locals b (dalle_binder *), st (dalle_safetensors *) and
 * s (dalle_status): bind t (a vector or table, or a matmul weight [n, k]) or return the
 * error. */
#define DALLE_TAKE(t, ...)                                                                         \
    do {                                                                                           \
        if ((s = dalle_binder_take(b, st, (t), __VA_ARGS__)) != DALLE_OK)                          \
            return s;                                                                              \
    } while (0)
#define DALLE_TAKE_MATMUL(t, ...)                                                                  \
    do {                                                                                           \
        if ((s = dalle_binder_take_matmul(b, st, (t), __VA_ARGS__)) != DALLE_OK)                   \
            return s;                                                                              \
    } while (0)

void dalle_binder_free(dalle_binder *b);

#endif /* DALLE_MODEL_LOADER_WEIGHTS_H */
