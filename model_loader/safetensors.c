/* safetensors.c — hostile-input safetensors parser, mmap loader and dtype widening (see
 * safetensors.h). Layout: u64 little-endian header length N, N bytes of JSON, then the data
 * section; every tensor's data_offsets are relative to the start of the data section.
 */
#include "model_loader/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/half.h"
#include "model_loader/json_util.h"
#include "model_loader/regular_file.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "F32 data is copied as-is");

#define ST_HEADER_MAX ((uint64_t)100 << 20)
#define ST_DIM_MAX    ((int64_t)1 << 40)
#define ST_NAME_MAX   255
#define ST_METADATA   "__metadata__"

/* Valid safetensors dtypes this build does not load: named so the message says "unsupported"
 * rather than "unknown". */
static const char *const OTHER_DTYPES[] = {
    "BOOL", "U8",  "I8", "U16",     "I16",     "U32",     "I32",     "U64",     "I64",
    "F64",  "C64", "F4", "F6_E2M3", "F6_E3M2", "F8_E4M3", "F8_E5M2", "F8_E8M0",
};

/* "[96, 64]" */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

static dalle_status parse_dtype(const json_t *v, const char *at, dalle_dtype *out,
                                dalle_error *err) {
    static const dalle_dtype LOADED[] = {DALLE_F32, DALLE_F16, DALLE_BF16};
    char found[64];
    const char *s = json_string_value(v);
    for (size_t i = 0; s && i < sizeof LOADED / sizeof *LOADED; i++)
        if (!strcmp(s, dalle_dtype_name(LOADED[i]))) {
            *out = LOADED[i];
            return DALLE_OK;
        }
    for (size_t i = 0; s && i < sizeof OTHER_DTYPES / sizeof *OTHER_DTYPES; i++)
        if (!strcmp(s, OTHER_DTYPES[i]))
            return dalle_error_set(err, DALLE_ERR_UNSUPPORTED,
                                   "%s: unsupported dtype %s (this build loads F32, F16 and BF16; "
                                   "re-run tools/convert.py)",
                                   at, dalle_json_describe(v, found, sizeof found));
    return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: expected dtype F32, F16 or BF16, found %s",
                           at, dalle_json_describe(v, found, sizeof found));
}

/* Fills t->ndim, t->shape and t->numel (the product, checked against int64 overflow). */
static dalle_status parse_shape(const json_t *v, const char *at, dalle_st_tensor *t,
                                dalle_error *err) {
    char found[64];
    if (!json_is_array(v))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: shape: expected an array, found %s", at,
                               dalle_json_describe(v, found, sizeof found));
    size_t nd = json_array_size(v);
    if (nd > DALLE_ST_MAX_DIMS)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: shape has %zu dims, at most %d allowed",
                               at, nd, DALLE_ST_MAX_DIMS);
    int has_zero = 0;
    for (size_t i = 0; i < nd; i++) {
        const json_t *d = json_array_get(v, i);
        json_int_t x = json_is_integer(d) ? json_integer_value(d) : -1;
        if (x < 0 || x > ST_DIM_MAX)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: shape[%zu]: expected an integer in [0, 2^40], found %s", at,
                                   i, dalle_json_describe(d, found, sizeof found));
        t->shape[i] = x;
        has_zero |= x == 0;
    }
    t->ndim = (int)nd;
    t->numel = has_zero ? 0 : 1;
    for (int i = 0; i < t->ndim && t->numel; i++)
        if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel)) {
            char sh[160];
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: shape %s has more than 2^63 elements", at,
                                   shape_str(sh, sizeof sh, t->ndim, t->shape));
        }
    return DALLE_OK;
}

/* Checks data_offsets against the data section and the shape, then points t->data at it. */
static dalle_status parse_offsets(const json_t *v, const char *at, const uint8_t *blob,
                                  size_t blob_n, dalle_st_tensor *t, dalle_error *err) {
    char found[64], sh[160];
    const json_t *jb = json_array_get(v, 0), *je = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(jb) ||
        !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0) {
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        dalle_error_set(
            err, DALLE_ERR_FORMAT,
            "%s: data_offsets: expected [begin, end] of non-negative integers, found %s", at,
            text ? dalle_json_printable(text, found, sizeof found) : "?");
        free(text);
        return DALLE_ERR_FORMAT;
    }
    long long b = json_integer_value(jb), e = json_integer_value(je);
    if (e < b)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: data_offsets [%lld, %lld]: end < begin",
                               at, b, e);
    if ((unsigned long long)e > blob_n)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: data_offsets [%lld, %lld]: past the end of the %zu-byte data "
                               "section",
                               at, b, e, blob_n);
    size_t esize = dalle_dtype_size(t->dtype);
    shape_str(sh, sizeof sh, t->ndim, t->shape);
    if (t->numel > (int64_t)((unsigned long long)(e - b) / esize) ||
        (unsigned long long)t->numel * esize != (unsigned long long)(e - b))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: data_offsets [%lld, %lld] hold %lld bytes, but shape %s of %s "
                               "needs %lld elements x %zu bytes",
                               at, b, e, e - b, sh, dalle_dtype_name(t->dtype), (long long)t->numel,
                               esize);
    t->data = blob + b;
    t->nbytes = (size_t)(e - b);
    return DALLE_OK;
}

/* Non-empty, at most 255 bytes, no NUL or other control byte (messages stay one line). */
static dalle_status check_name(const char *name, size_t len, const char *label, dalle_error *err) {
    char shown[64];
    if (len == 0)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: a tensor has an empty name", label);
    if (len > ST_NAME_MAX)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: tensor '%s': name of %zu bytes, at most %d allowed", label,
                               dalle_json_printable(name, shown, sizeof shown), len, ST_NAME_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return dalle_error_set(
                err, DALLE_ERR_FORMAT, "%s: tensor '%s': name contains control byte 0x%02x", label,
                dalle_json_printable(name, shown, sizeof shown), (unsigned char)name[i]);
    return DALLE_OK;
}

static dalle_status parse_tensor(dalle_st_tensor *t, const char *name, json_t *v,
                                 const uint8_t *blob, size_t blob_n, const char *label,
                                 dalle_error *err) {
    static const char *const KEYS[] = {"dtype", "shape", "data_offsets"};
    char at[640], found[64];
    snprintf(at, sizeof at, "%s: tensor '%s'", label, name);
    if (!json_is_object(v))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: expected an object {dtype, shape, data_offsets}, found %s", at,
                               dalle_json_describe(v, found, sizeof found));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        size_t i = 0;
        while (i < 3 && strcmp(key, KEYS[i]))
            i++;
        if (i == 3)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: unknown key '%s' (expected dtype, shape, data_offsets)", at,
                                   dalle_json_printable(key, found, sizeof found));
    }
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get(v, KEYS[i]))
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: missing key '%s'", at, KEYS[i]);

    dalle_st_tensor local = {0};
    dalle_status s = parse_dtype(json_object_get(v, "dtype"), at, &local.dtype, err);
    if (s == DALLE_OK)
        s = parse_shape(json_object_get(v, "shape"), at, &local, err);
    if (s == DALLE_OK)
        s = parse_offsets(json_object_get(v, "data_offsets"), at, blob, blob_n, &local, err);
    if (s != DALLE_OK)
        return s;
    if (!(local.name = strdup(name)))
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory", at);
    *t = local;
    return DALLE_OK;
}

static dalle_status parse_metadata(dalle_safetensors *st, json_t *v, dalle_error *err) {
    char found[64], shown[64];
    if (!json_is_object(v))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: " ST_METADATA ": expected an object of strings, found %s",
                               st->label, dalle_json_describe(v, found, sizeof found));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val))
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: " ST_METADATA " key '%s': expected a string, found %s",
                                   st->label, dalle_json_printable(key, shown, sizeof shown),
                                   dalle_json_describe(val, found, sizeof found));
    }
    if (!(st->metadata_json = json_dumps(v, JSON_COMPACT)))
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory", st->label);
    return DALLE_OK;
}

static dalle_status parse_root(dalle_safetensors *st, json_t *root, const uint8_t *blob,
                               size_t blob_n, dalle_error *err) {
    st->tensors = calloc(json_object_size(root) + 1, sizeof *st->tensors);
    if (!st->tensors)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory", st->label);
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(root, key, key_len, v) {
        dalle_status s = check_name(key, key_len, st->label, err);
        if (s == DALLE_OK && !strcmp(key, ST_METADATA)) {
            s = parse_metadata(st, v, err);
        } else if (s == DALLE_OK) {
            s = parse_tensor(&st->tensors[st->n_tensors], key, v, blob, blob_n, st->label, err);
            st->n_tensors += s == DALLE_OK;
        }
        if (s != DALLE_OK)
            return s;
    }
    return DALLE_OK;
}

static int by_data(const void *a, const void *b) {
    const dalle_st_tensor *x = *(const dalle_st_tensor *const *)a;
    const dalle_st_tensor *y = *(const dalle_st_tensor *const *)b;
    return (x->data > y->data) - (x->data < y->data);
}

/* Sorted by begin, each non-empty tensor must start at or after the previous non-empty one
 * ends (which, while nothing overlaps, is the furthest end so far). */
static dalle_status check_overlaps(const dalle_safetensors *st, const uint8_t *blob,
                                   dalle_error *err) {
    if (st->n_tensors < 2)
        return DALLE_OK;
    const dalle_st_tensor **order = malloc(st->n_tensors * sizeof *order);
    if (!order)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory", st->label);
    for (size_t i = 0; i < st->n_tensors; i++)
        order[i] = &st->tensors[i];
    qsort(order, st->n_tensors, sizeof *order, by_data);
    dalle_status s = DALLE_OK;
    const dalle_st_tensor *last = NULL;
    for (size_t i = 0; i < st->n_tensors && s == DALLE_OK; i++) {
        const dalle_st_tensor *t = order[i];
        if (!t->nbytes)
            continue;
        if (last && t->data < last->data + last->nbytes) {
            long long tb = t->data - blob, lb = last->data - blob;
            s = dalle_error_set(err, DALLE_ERR_FORMAT,
                                "%s: tensor '%s' [%lld, %lld) overlaps tensor '%s' [%lld, %lld)",
                                st->label, t->name, tb, tb + (long long)t->nbytes, last->name, lb,
                                lb + (long long)last->nbytes);
        }
        last = t;
    }
    free(order);
    return s;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const dalle_st_tensor *)a)->name, ((const dalle_st_tensor *)b)->name);
}

/* Keeps the end of a long path: it holds the file name. */
static void set_label(dalle_safetensors *st, const char *label) {
    size_t len = strlen(label), cap = sizeof st->label;
    if (len < cap)
        memcpy(st->label, label, len + 1);
    else
        snprintf(st->label, cap, "...%s", label + len - (cap - 4));
}

dalle_status dalle_safetensors_parse(dalle_safetensors *st, const uint8_t *bytes, size_t n,
                                     const char *label, dalle_error *err) {
    memset(st, 0, sizeof *st);
    set_label(st, label ? label : "safetensors");
    if (n == 0)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: file is empty", st->label);
    if (n < 8)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %zu bytes, too short for the 8-byte header length", st->label,
                               n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)bytes[i] << (8 * i);
    if (hlen == 0)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: header length is 0", st->label);
    if (hlen > n - 8)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: header length %llu is past the end of the file (%zu bytes "
                               "follow the length field)",
                               st->label, (unsigned long long)hlen, n - 8);
    if (hlen > ST_HEADER_MAX)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: header length %llu exceeds the 100 MiB limit", st->label,
                               (unsigned long long)hlen);
    json_t *root = dalle_json_parse_object(bytes + 8, (size_t)hlen, st->label, err);
    if (!root)
        return DALLE_ERR_FORMAT;
    const uint8_t *blob = bytes + 8 + hlen;
    dalle_status s = parse_root(st, root, blob, n - 8 - (size_t)hlen, err);
    json_decref(root);
    if (s == DALLE_OK)
        s = check_overlaps(st, blob, err);
    if (s != DALLE_OK) {
        dalle_safetensors_close(st);
        return s;
    }
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, by_name);
    return DALLE_OK;
}

dalle_status dalle_safetensors_open(dalle_safetensors *st, const char *path, dalle_error *err) {
    memset(st, 0, sizeof *st);
    int fd;
    size_t size;
    dalle_status s = dalle_regular_file_open(path, &fd, &size, err);
    if (s != DALLE_OK)
        return s;
    void *map = NULL; /* a 0-byte file is not mapped; parse rejects it */
    if (size > 0 && (map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        int e = errno;
        close(fd);
        return dalle_error_set(err, DALLE_ERR_IO, "%s: cannot map %zu bytes: %s", path, size,
                               strerror(e));
    }
    close(fd);
    s = dalle_safetensors_parse(st, map, size, path, err);
    if (s != DALLE_OK) {
        if (map)
            munmap(map, size);
        return s;
    }
    st->map = map;
    st->map_size = size;
    return DALLE_OK;
}

/* The index of the first element whose exponent bits are all ones (NaN or ±Inf) in the
 * raw stored dtype, or -1. The scan reads 8 bytes at a time (2 or 4 elements, each a lane):
 * x = (w & M) ^ M has a zero lane exactly where an exponent is all ones, and the classic
 * zero-lane test (x - 1s) & ~x & top bits finds one (the masks leave the top bit of every
 * lane clear). Only a tensor with a hit is searched element by element. */
static int64_t first_non_finite(const dalle_st_tensor *t) {
    const size_t esize = dalle_dtype_size(t->dtype);
    const uint32_t m = t->dtype == DALLE_F32   ? 0x7f800000u
                       : t->dtype == DALLE_F16 ? 0x7c00u
                                               : 0x7f80u; /* BF16 */
    const uint64_t ones = esize == 4 ? 0x0000000100000001ull : 0x0001000100010001ull;
    const uint64_t mask = m * ones, top = ones << (8 * esize - 1);
    uint64_t hit = 0;
    size_t i = 0;
    for (; i + 8 <= t->nbytes; i += 8) {
        uint64_t w;
        memcpy(&w, t->data + i, 8);
        const uint64_t x = (w & mask) ^ mask;
        hit |= (x - ones) & ~x & top;
    }
    for (; i < t->nbytes; i += esize) {
        uint32_t u = 0;
        memcpy(&u, t->data + i, esize);
        hit |= (u & m) == m;
    }
    for (size_t k = 0; hit && k < (size_t)t->numel; k++) {
        uint32_t u = 0;
        memcpy(&u, t->data + esize * k, esize);
        if ((u & m) == m)
            return (int64_t)k;
    }
    return -1;
}

dalle_status dalle_safetensors_check_finite(const dalle_safetensors *st, dalle_error *err) {
    for (size_t i = 0; i < st->n_tensors; i++) {
        const int64_t k = first_non_finite(&st->tensors[i]);
        if (k >= 0)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: tensor '%s' holds NaN or infinity (element %lld); the "
                                   "weights are damaged",
                                   st->label, st->tensors[i].name, (long long)k);
    }
    return DALLE_OK;
}

static dalle_st_tensor *find(const dalle_safetensors *st, const char *name) {
    dalle_st_tensor key = {.name = (char *)name};
    return st->n_tensors ? bsearch(&key, st->tensors, st->n_tensors, sizeof *st->tensors, by_name)
                         : NULL;
}

const dalle_st_tensor *dalle_safetensors_find(const dalle_safetensors *st, const char *name) {
    return find(st, name);
}

dalle_status dalle_safetensors_take(dalle_safetensors *st, const char *name, int ndim,
                                    const int64_t *shape, const dalle_st_tensor **out,
                                    dalle_error *err) {
    DALLE_ASSERT(ndim >= 0 && ndim <= DALLE_ST_MAX_DIMS);
    char want[160], found[160];
    *out = NULL;
    dalle_st_tensor *t = find(st, name);
    if (!t)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: tensor '%s' (shape %s) is missing",
                               st->label, name, shape_str(want, sizeof want, ndim, shape));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: tensor '%s': expected shape %s, found %s", st->label, name,
                               shape_str(want, sizeof want, ndim, shape),
                               shape_str(found, sizeof found, t->ndim, t->shape));
    t->used = 1;
    *out = t;
    return DALLE_OK;
}

dalle_status dalle_safetensors_check_all_used(const dalle_safetensors *st, dalle_error *err) {
    size_t unused = 0;
    const dalle_st_tensor *first = NULL;
    for (size_t i = 0; i < st->n_tensors; i++)
        if (!st->tensors[i].used && !unused++)
            first = &st->tensors[i];
    if (unused)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: tensor '%s' is not used by this model (%zu unused in all; the "
                               "file does not match config.json)",
                               st->label, first->name, unused);
    return dalle_safetensors_check_finite(st, err);
}

/* IEEE half → single, exact: subnormals are man·2^-24, inf and NaN keep their payload. */
void dalle_st_tensor_to_f32(const dalle_st_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case DALLE_F32:
        if (n)
            memcpy(dst, p, n * sizeof *dst);
        return;
    case DALLE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = dalle_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    case DALLE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = dalle_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return;
    }
}

void dalle_safetensors_close(dalle_safetensors *st) {
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    free(st->metadata_json);
    if (st->map)
        munmap(st->map, st->map_size);
    memset(st, 0, sizeof *st);
}
