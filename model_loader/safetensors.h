/* safetensors.h — hostile-input reader for .safetensors files.
 *
 * Contract: dalle_safetensors_parse() checks a byte buffer completely before anything
 * points into it: the 8-byte little-endian header length against the buffer size, the JSON
 * header (jansson, duplicate keys rejected), every tensor's dtype, shape (each dim ≥ 0 and
 * the product computed without overflow) and [begin, end) offsets (inside the data blob,
 * equal to numel·dtype size, no two tensors overlapping). It copies names and shapes, never
 * the tensor data: tensors point into the buffer, which must outlive the handle. Errors
 * name the file (`label`), the tensor and what was expected, in one line.
 * Limits: header ≤ 100 MiB, names 1..255 bytes without control bytes, ≤ 8 dims of ≤ 2^40
 * each; other valid safetensors dtypes (I32, F64, U8…) give DALLE_ERR_UNSUPPORTED, anything
 * else malformed DALLE_ERR_FORMAT. Zero-byte tensors may sit anywhere in the data section.
 * dalle_safetensors_open() refuses anything but a regular file (a FIFO would block), mmaps
 * it read-only and parses it (the label is the path). A model loader's closing check
 * (dalle_safetensors_check_all_used) also refuses a tensor holding a NaN or an infinity
 * (dalle_safetensors_check_finite: about 0.2 ms per MB of weights, see README).
 * Thread-safety: a parsed handle is read-only except for the `used` marks of *_take().
 */
#ifndef DALLE_MODEL_LOADER_SAFETENSORS_H
#define DALLE_MODEL_LOADER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"
#include "kernels/ops.h"

#define DALLE_ST_MAX_DIMS 8

typedef struct {
    char *name;
    dalle_dtype dtype; /* F32, F16 or BF16 (other safetensors dtypes are rejected) */
    int ndim;
    int64_t shape[DALLE_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* points into the mapped file */
    size_t nbytes;
    int used; /* set by dalle_safetensors_take() */
} dalle_st_tensor;

typedef struct {
    char label[256];          /* file name used in messages */
    dalle_st_tensor *tensors; /* sorted by name (find() is a binary search) */
    size_t n_tensors;
    char *metadata_json; /* the "__metadata__" object re-serialized, or NULL */
    void *map;           /* mmap base when opened from a file, else NULL */
    size_t map_size;
} dalle_safetensors;

/* Parse `n` bytes; `label` names the source in error messages. On failure *st is left
 * empty (safe to close). */
dalle_status dalle_safetensors_parse(dalle_safetensors *st, const uint8_t *bytes, size_t n,
                                     const char *label, dalle_error *err);

/* mmap `path` read-only and parse it. */
dalle_status dalle_safetensors_open(dalle_safetensors *st, const char *path, dalle_error *err);

/* DALLE_ERR_FORMAT naming the file, the first tensor that holds a NaN or ±Inf and the
 * element, checked on the stored F16/BF16/F32 bits. */
dalle_status dalle_safetensors_check_finite(const dalle_safetensors *st, dalle_error *err);

/* The tensor called `name`, or NULL. */
const dalle_st_tensor *dalle_safetensors_find(const dalle_safetensors *st, const char *name);

/* Find `name`, check its shape equals shape[0..ndim-1], mark it used. Missing tensor or a
 * different shape → DALLE_ERR_FORMAT naming file, tensor, expected and found shape. */
dalle_status dalle_safetensors_take(dalle_safetensors *st, const char *name, int ndim,
                                    const int64_t *shape, const dalle_st_tensor **out,
                                    dalle_error *err);

/* A model file's closing check, after every expected tensor was taken: DALLE_ERR_FORMAT
 * naming the first tensor that was not (an extra tensor means the file does not match
 * config.json), else dalle_safetensors_check_finite's verdict. */
dalle_status dalle_safetensors_check_all_used(const dalle_safetensors *st, dalle_error *err);

/* Convert a tensor's elements to fp32 (F32 copy, F16 and BF16 exact widening). */
void dalle_st_tensor_to_f32(const dalle_st_tensor *t, float *dst);

/* Frees and unmaps; safe on a zeroed or failed handle, and twice. */
void dalle_safetensors_close(dalle_safetensors *st);

#endif /* DALLE_MODEL_LOADER_SAFETENSORS_H */
