/* test_safetensors.c — the safetensors reader against valid files and every class of
 * malformed file, built in memory by st_build(); F16/BF16 widening checked exhaustively;
 * open() on missing, empty and real files.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_loader/safetensors.h"

#define LABEL "t.safetensors"

typedef struct {
    uint8_t *p;
    size_t n;
} file_bytes;

/* A file image: 8-byte LE length `hlen`, then `rest` (rest_n bytes). */
static file_bytes st_raw(uint64_t hlen, const void *rest, size_t rest_n) {
    file_bytes b = {malloc(8 + rest_n + 1), 8 + rest_n};
    cr_assert_not_null(b.p);
    for (int i = 0; i < 8; i++)
        b.p[i] = (uint8_t)(hlen >> (8 * i));
    if (rest_n)
        memcpy(b.p + 8, rest, rest_n);
    return b;
}

/* A file image whose header is the printf-formatted JSON, followed by data_n data bytes. */
static file_bytes st_build(const void *data, size_t data_n, const char *fmt, ...) {
    char hdr[8192];
    va_list ap;
    va_start(ap, fmt);
    int h = vsnprintf(hdr, sizeof hdr, fmt, ap);
    va_end(ap);
    cr_assert(h > 0 && (size_t)h < sizeof hdr);
    uint8_t *rest = malloc((size_t)h + data_n + 1);
    memcpy(rest, hdr, (size_t)h);
    if (data_n)
        memcpy(rest + h, data, data_n);
    file_bytes b = st_raw((uint64_t)h, rest, (size_t)h + data_n);
    free(rest);
    return b;
}

static dalle_status parse(dalle_safetensors *st, file_bytes b, dalle_error *err) {
    return dalle_safetensors_parse(st, b.p, b.n, LABEL, err);
}

/* Parsing must fail with `want`, a one-line message naming the file and containing `text`,
 * and leave the handle empty. Frees b. */
static void expect_fail(file_bytes b, dalle_status want, const char *text) {
    dalle_safetensors st;
    dalle_error err = {0};
    dalle_status s = parse(&st, b, &err);
    cr_assert_eq(s, want, "status %d (want %d): %s", s, want, err.msg);
    cr_assert_eq(err.status, want);
    cr_assert(strncmp(err.msg, LABEL ": ", strlen(LABEL) + 2) == 0, "no label: %s", err.msg);
    cr_assert(strstr(err.msg, text), "message '%s' lacks '%s'", err.msg, text);
    cr_assert_null(strchr(err.msg, '\n'), "%s", err.msg);
    cr_assert_null(st.tensors);
    cr_assert_eq(st.n_tensors, 0);
    cr_assert_null(st.metadata_json);
    dalle_safetensors_close(&st);
    free(b.p);
}

/* One F32 [2] tensor "a" with the given entry fields, over `data_n` zero bytes. */
static file_bytes one_tensor(size_t data_n, const char *entry) {
    uint8_t zeros[64] = {0};
    cr_assert(data_n <= sizeof zeros);
    return st_build(zeros, data_n, "{\"a\":%s}", entry);
}

/* ---- the valid file used by several tests ---- */

static const float A_VALUES[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};
static const uint16_t B_BITS[4] = {0x3c00, 0xc000, 0x3800, 0x7bff}; /* 1, -2, 0.5, 65504 */
static const uint16_t C_BITS[4] = {0x3f80, 0xbf80, 0x4049, 0x0000}; /* 1, -1, 3.140625, 0 */

static file_bytes valid_file(void) {
    uint8_t data[40];
    memcpy(data, A_VALUES, 24);
    memcpy(data + 24, B_BITS, 8);
    memcpy(data + 32, C_BITS, 8);
    /* keys out of name order: the handle sorts them */
    return st_build(data, sizeof data,
                    "{\"c\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
                    " \"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                    " \"a\":{\"shape\":[2,3],\"dtype\":\"F32\",\"data_offsets\":[0,24]},"
                    " \"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}   ");
}

static void check_valid(const dalle_safetensors *st) {
    cr_assert_eq(st->n_tensors, 3);
    cr_assert_str_eq(st->metadata_json, "{\"format\":\"pt\",\"k\":\"v\"}");
    const dalle_st_tensor *a = dalle_safetensors_find(st, "a");
    const dalle_st_tensor *b = dalle_safetensors_find(st, "b");
    const dalle_st_tensor *c = dalle_safetensors_find(st, "c");
    cr_assert(a && b && c);
    cr_assert_null(dalle_safetensors_find(st, "d"));
    cr_assert_null(dalle_safetensors_find(st, "__metadata__"));
    cr_assert_eq(a->dtype, DALLE_F32);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[0], 2);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_eq(a->numel, 6);
    cr_assert_eq(a->nbytes, 24);
    cr_assert_eq(b->dtype, DALLE_F16);
    cr_assert_eq(b->ndim, 1);
    cr_assert_eq(b->numel, 4);
    cr_assert_eq(c->dtype, DALLE_BF16);
    cr_assert_eq(c->numel, 4);
    cr_assert_eq(b->data, a->data + 24);
    cr_assert_eq(c->data, a->data + 32);

    float v[6];
    dalle_st_tensor_to_f32(a, v);
    cr_assert_arr_eq(v, A_VALUES, sizeof A_VALUES);
    const float want_b[4] = {1.0f, -2.0f, 0.5f, 65504.0f};
    dalle_st_tensor_to_f32(b, v);
    cr_assert_arr_eq(v, want_b, sizeof want_b);
    const float want_c[4] = {1.0f, -1.0f, 3.140625f, 0.0f};
    dalle_st_tensor_to_f32(c, v);
    cr_assert_arr_eq(v, want_c, sizeof want_c);
}

Test(safetensors, valid_round_trip) {
    file_bytes f = valid_file();
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(st.label, LABEL);
    cr_assert_null(st.map);
    check_valid(&st);
    dalle_safetensors_close(&st);
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, every_truncation_fails_cleanly) {
    file_bytes f = valid_file();
    for (size_t len = 0; len <= f.n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, f.p, len);
        dalle_safetensors st;
        dalle_error err = {0};
        dalle_status s = dalle_safetensors_parse(&st, copy, len, LABEL, &err);
        if (len == f.n) {
            cr_assert_eq(s, DALLE_OK, "%s", err.msg);
            check_valid(&st);
        } else {
            cr_assert_eq(s, DALLE_ERR_FORMAT, "prefix %zu: status %d", len, s);
            cr_assert(strncmp(err.msg, LABEL ": ", strlen(LABEL) + 2) == 0, "%s", err.msg);
            cr_assert_null(st.tensors);
        }
        dalle_safetensors_close(&st);
        free(copy);
    }
    free(f.p);
}

Test(safetensors, header_length) {
    expect_fail(st_raw(0, NULL, 0), DALLE_ERR_FORMAT, "header length is 0");
    expect_fail(st_raw(0, "{}", 2), DALLE_ERR_FORMAT, "header length is 0");
    expect_fail(st_raw(3, "{}", 2), DALLE_ERR_FORMAT, "header length 3 is past the end");
    expect_fail(st_raw(100, "{}", 2), DALLE_ERR_FORMAT, "past the end of the file");
    expect_fail(st_raw(1ull << 63, "{}", 2), DALLE_ERR_FORMAT, "9223372036854775808");
    expect_fail(st_raw(UINT64_MAX, "{}", 2), DALLE_ERR_FORMAT, "past the end");
    file_bytes tiny = {(uint8_t *)strdup("1234567"), 7};
    expect_fail(tiny, DALLE_ERR_FORMAT, "7 bytes, too short");
    file_bytes empty = {malloc(1), 0};
    expect_fail(empty, DALLE_ERR_FORMAT, "file is empty");
}

Test(safetensors, header_over_100_mib) {
    size_t hlen = (100u << 20) + 1;
    file_bytes b = {calloc(1, 8 + hlen), 8 + hlen}; /* untouched zero pages: cheap */
    cr_assert_not_null(b.p);
    for (int i = 0; i < 8; i++)
        b.p[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    expect_fail(b, DALLE_ERR_FORMAT, "100 MiB limit");
}

Test(safetensors, header_not_json_or_not_object) {
    expect_fail(st_build(NULL, 0, "{not json"), DALLE_ERR_FORMAT, "not valid JSON");
    expect_fail(st_build(NULL, 0, "{} trailing"), DALLE_ERR_FORMAT, "not valid JSON");
    expect_fail(st_build(NULL, 0, "[1, 2]"), DALLE_ERR_FORMAT,
                "expected a JSON object, found an array");
    expect_fail(st_build(NULL, 0, "\"x\""), DALLE_ERR_FORMAT, "not valid JSON"); /* no DECODE_ANY */
    expect_fail(st_build(NULL, 0, "{\"a\": 5}"), DALLE_ERR_FORMAT,
                "tensor 'a': expected an object");
}

Test(safetensors, empty_header_object_is_a_file_without_tensors) {
    file_bytes f = st_build(NULL, 0, "{}");
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(st.n_tensors, 0);
    cr_assert_null(dalle_safetensors_find(&st, "a"));
    cr_assert_eq(dalle_safetensors_check_all_used(&st, &err), DALLE_OK);
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, overlapping_offsets) {
    uint8_t z[16] = {0};
    expect_fail(st_build(z, 12,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"),
                DALLE_ERR_FORMAT, "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");
    /* b lies inside a long a; c starts after b but still inside a */
    expect_fail(st_build(z, 16,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[2,4]},"
                         "\"c\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]}}"),
                DALLE_ERR_FORMAT, "overlaps tensor 'a'");
    expect_fail(st_build(z, 8,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"),
                DALLE_ERR_FORMAT, "overlaps");
}

Test(safetensors, empty_tensors_overlap_nothing) {
    uint8_t z[8] = {0};
    file_bytes f = st_build(z, 8,
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                            "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[8,10]}}");
    expect_fail(f, DALLE_ERR_FORMAT,
                "tensor 's': data_offsets [8, 10]: past the end of the 8-byte");
    f = st_build(z, 8,
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,0],"
                 "\"data_offsets\":[8,8]}}");
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_find(&st, "e")->numel, 0);
    cr_assert_eq(dalle_safetensors_find(&st, "z")->numel, 0);
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, bad_offsets) {
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}"),
                DALLE_ERR_FORMAT,
                "tensor 'a': data_offsets [0, 16]: past the end of the 8-byte data section");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}"),
                DALLE_ERR_FORMAT, "data_offsets [8, 0]: end < begin");
    expect_fail(
        one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), DALLE_ERR_FORMAT,
        "data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 3 elements x 4 bytes");
    expect_fail(one_tensor(8, "{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "shape [2] of F16");
    const char *forms[] = {"[0]", "[0,8,9]", "[-1,7]", "[0,\"8\"]", "[0,8.0]", "\"0-8\"", "{}"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char entry[128];
        snprintf(entry, sizeof entry, "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":%s}",
                 forms[i]);
        expect_fail(one_tensor(8, entry), DALLE_ERR_FORMAT, "data_offsets: expected [begin, end]");
    }
    /* past int64: jansson refuses the integer itself */
    expect_fail(
        one_tensor(8,
                   "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}"),
        DALLE_ERR_FORMAT, "not valid JSON");
}

Test(safetensors, dtypes) {
    expect_fail(one_tensor(8, "{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                DALLE_ERR_UNSUPPORTED, "tensor 'a': unsupported dtype \"I32\"");
    expect_fail(one_tensor(8, "{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}"),
                DALLE_ERR_UNSUPPORTED, "unsupported dtype \"F64\"");
    expect_fail(one_tensor(8, "{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}"),
                DALLE_ERR_UNSUPPORTED, "unsupported dtype \"U8\"");
    expect_fail(one_tensor(8, "{\"dtype\":\"XYZ\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "tensor 'a': expected dtype F32, F16 or BF16, found \"XYZ\"");
    expect_fail(one_tensor(8, "{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "found \"f32\"");
    expect_fail(one_tensor(8, "{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "found 4");
}

Test(safetensors, shapes) {
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT,
                "tensor 'a': shape[0]: expected an integer in [0, 2^40], found -1");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "shape[0]: expected an integer in [0, 2^40], found 2.0");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "shape[1]: expected an integer in [0, 2^40], found \"2\"");
    expect_fail(
        one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[1099511627777],\"data_offsets\":[0,8]}"),
        DALLE_ERR_FORMAT, "found 1099511627777");
    expect_fail(
        one_tensor(
            8,
            "{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}"),
        DALLE_ERR_FORMAT, "shape [1099511627776, 1099511627776] has more than 2^63 elements");
    /* fits int64 as elements, not as bytes */
    expect_fail(
        one_tensor(8,
                   "{\"dtype\":\"F32\",\"shape\":[1099511627776,4194304],\"data_offsets\":[0,8]}"),
        DALLE_ERR_FORMAT, "hold 8 bytes, but shape [1099511627776, 4194304] of F32");
    expect_fail(
        one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}"),
        DALLE_ERR_FORMAT, "shape has 9 dims, at most 8 allowed");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"),
                DALLE_ERR_FORMAT, "shape: expected an array, found 2");

    file_bytes f =
        one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}");
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(st.tensors[0].ndim, 8);
    cr_assert_eq(st.tensors[0].shape[7], 2);
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, entry_keys) {
    expect_fail(
        one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}"),
        DALLE_ERR_FORMAT, "tensor 'a': unknown key 'extra' (expected dtype, shape, data_offsets)");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), DALLE_ERR_FORMAT,
                "tensor 'a': missing key 'shape'");
    expect_fail(one_tensor(8, "{\"shape\":[2],\"data_offsets\":[0,8]}"), DALLE_ERR_FORMAT,
                "missing key 'dtype'");
    expect_fail(one_tensor(8, "{\"dtype\":\"F32\",\"shape\":[2]}"), DALLE_ERR_FORMAT,
                "missing key 'data_offsets'");
}

Test(safetensors, duplicate_keys) {
    expect_fail(st_build(NULL, 0,
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}"),
                DALLE_ERR_FORMAT, "duplicate");
    expect_fail(
        one_tensor(0, "{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}"),
        DALLE_ERR_FORMAT, "duplicate");
    expect_fail(st_build(NULL, 0, "{\"__metadata__\":{},\"__metadata__\":{}}"), DALLE_ERR_FORMAT,
                "duplicate");
}

Test(safetensors, metadata) {
    expect_fail(st_build(NULL, 0, "{\"__metadata__\":{\"k\":\"v\",\"n\":1}}"), DALLE_ERR_FORMAT,
                "__metadata__ key 'n': expected a string, found 1");
    expect_fail(st_build(NULL, 0, "{\"__metadata__\":{\"k\":{}}}"), DALLE_ERR_FORMAT,
                "found an object");
    expect_fail(st_build(NULL, 0, "{\"__metadata__\":[\"k\"]}"), DALLE_ERR_FORMAT,
                "__metadata__: expected an object of strings, found an array");
    file_bytes f = st_build(NULL, 0, "{\"__metadata__\":{}}");
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(st.metadata_json, "{}");
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, names) {
    const char *entry = "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
    expect_fail(st_build(NULL, 0, "{\"\":%s}", entry), DALLE_ERR_FORMAT,
                "a tensor has an empty name");
    expect_fail(st_build(NULL, 0, "{\"a\\u0001b\":%s}", entry), DALLE_ERR_FORMAT,
                "tensor 'a?b': name contains control byte 0x01");
    expect_fail(st_build(NULL, 0, "{\"a\\u0000b\":%s}", entry), DALLE_ERR_FORMAT, "not valid JSON");
    char name[300];
    memset(name, 'n', sizeof name);
    name[256] = '\0';
    expect_fail(st_build(NULL, 0, "{\"%s\":%s}", name, entry), DALLE_ERR_FORMAT,
                "name of 256 bytes, at most 255 allowed");
    name[255] = '\0';
    file_bytes f = st_build(NULL, 0, "{\"%s\":%s}", name, entry);
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    cr_assert_not_null(dalle_safetensors_find(&st, name));
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, long_label_keeps_the_file_name) {
    char label[600];
    memset(label, 'd', sizeof label);
    strcpy(label + 500, "/encoder.safetensors");
    file_bytes f = st_build(NULL, 0, "[]");
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_parse(&st, f.p, f.n, label, &err), DALLE_ERR_FORMAT);
    cr_assert(strncmp(err.msg, "...d", 4) == 0, "%s", err.msg);
    cr_assert(strstr(err.msg, "/encoder.safetensors: expected a JSON object"), "%s", err.msg);
    dalle_safetensors_close(&st);
    free(f.p);
}

Test(safetensors, take_and_check_all_used) {
    file_bytes f = valid_file();
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(parse(&st, f, &err), DALLE_OK, "%s", err.msg);
    static const dalle_st_tensor stale;
    const dalle_st_tensor *t = &stale; /* take() must reset it on failure */

    const int64_t wrong[2] = {3, 2};
    cr_assert_eq(dalle_safetensors_take(&st, "a", 2, wrong, &t, &err), DALLE_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, LABEL ": tensor 'a': expected shape [3, 2], found [2, 3]"), "%s",
              err.msg);
    const int64_t flat[1] = {6};
    cr_assert_eq(dalle_safetensors_take(&st, "a", 1, flat, &t, &err), DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, "expected shape [6], found [2, 3]"), "%s", err.msg);

    const int64_t one[1] = {1};
    cr_assert_eq(dalle_safetensors_take(&st, "missing.weight", 1, one, &t, &err), DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, LABEL ": tensor 'missing.weight' (shape [1]) is missing"), "%s",
              err.msg);

    const int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[2] = {2, 2};
    cr_assert_eq(dalle_safetensors_take(&st, "a", 2, sa, &t, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(t, dalle_safetensors_find(&st, "a"));
    cr_assert(t->used);
    cr_assert_eq(dalle_safetensors_take(&st, "b", 1, sb, &t, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_check_all_used(&st, &err), DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, LABEL ": tensor 'c' is not used by this model (1 unused"), "%s",
              err.msg);
    cr_assert_eq(dalle_safetensors_take(&st, "c", 2, sc, &t, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_safetensors_check_all_used(&st, &err), DALLE_OK);
    dalle_safetensors_close(&st);
    free(f.p);
}

/* Reference half → double by the textbook formula. */
static double f16_ref(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v = exp == 0    ? ldexp(man, -24)
               : exp == 31 ? (man ? NAN : INFINITY)
                           : ldexp(1024 + man, exp - 25);
    return sign ? -v : v;
}

Test(safetensors, f16_every_value_exact) {
    uint16_t *bits = malloc(65536 * sizeof *bits);
    float *out = malloc(65536 * sizeof *out);
    for (uint32_t i = 0; i < 65536; i++)
        bits[i] = (uint16_t)i;
    dalle_st_tensor t = {.dtype = DALLE_F16,
                         .ndim = 1,
                         .shape = {65536},
                         .numel = 65536,
                         .data = (const uint8_t *)bits,
                         .nbytes = 65536 * 2};
    dalle_st_tensor_to_f32(&t, out);
    for (uint32_t i = 0; i < 65536; i++) {
        double ref = f16_ref((uint16_t)i);
        uint32_t got;
        memcpy(&got, &out[i], 4);
        if (isnan(ref)) {
            uint32_t want = (i >> 15) << 31 | 0x7f800000u | (i & 0x3ff) << 13; /* payload kept */
            cr_assert_eq(got, want, "0x%04x → 0x%08x", i, got);
        } else {
            cr_assert(out[i] == (float)ref && !signbit(out[i]) == !signbit(ref),
                      "0x%04x → %a, want %a", i, out[i], ref);
        }
    }
    cr_assert_eq(out[0x0001], 0x1p-24f);
    cr_assert_eq(out[0x03ff], 1023 * 0x1p-24f);
    cr_assert_eq(out[0x0400], 0x1p-14f);
    cr_assert_eq(out[0x3c00], 1.0f);
    cr_assert_eq(out[0x7bff], 65504.0f);
    cr_assert(isinf(out[0x7c00]) && out[0x7c00] > 0);
    cr_assert(isinf(out[0xfc00]) && out[0xfc00] < 0);
    cr_assert(isnan(out[0x7e00]) && isnan(out[0xfe01]));
    cr_assert(out[0x8000] == 0 && signbit(out[0x8000]));
    cr_assert(out[0x8001] == -0x1p-24f);
    free(bits);
    free(out);
}

Test(safetensors, bf16_is_a_shift) {
    const uint16_t in[8] = {0x3f80, 0xc049, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x7f7f};
    float out[8];
    dalle_st_tensor t = {.dtype = DALLE_BF16,
                         .ndim = 1,
                         .shape = {8},
                         .numel = 8,
                         .data = (const uint8_t *)in,
                         .nbytes = sizeof in};
    dalle_st_tensor_to_f32(&t, out);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -3.140625f);
    cr_assert_eq(out[2], 0x1p-133f);
    cr_assert(isinf(out[3]) && out[3] > 0);
    cr_assert(isinf(out[4]) && out[4] < 0);
    cr_assert(isnan(out[5]));
    cr_assert(out[6] == 0 && signbit(out[6]));
    cr_assert_eq(out[7], 0x1.fep127f);
}

Test(safetensors, close_is_safe_on_zeroed_and_null) {
    dalle_safetensors st;
    memset(&st, 0, sizeof st);
    dalle_safetensors_close(&st);
    dalle_safetensors_close(&st);
    dalle_safetensors_close(NULL);
}

/* ---- open() ---- */

static char tmp_path[64];

static void write_tmp(const void *p, size_t n) {
    strcpy(tmp_path, "/tmp/dalle_st_XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

Test(safetensors_open, missing_file) {
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, "/nonexistent/dir/x.safetensors", &err), DALLE_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/dir/x.safetensors: cannot open: No such file"), "%s",
              err.msg);
    dalle_safetensors_close(&st);
}

Test(safetensors_open, directory) {
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, "/tmp", &err), DALLE_ERR_IO);
    cr_assert(strstr(err.msg, "/tmp: not a regular file"), "%s", err.msg);
    dalle_safetensors_close(&st);
}

Test(safetensors_open, fifo_does_not_block, .timeout = 10) {
    strcpy(tmp_path, "/tmp/dalle_st_fifo_XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert(fd >= 0);
    close(fd);
    unlink(tmp_path);
    cr_assert_eq(mkfifo(tmp_path, 0600), 0);
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, tmp_path, &err), DALLE_ERR_IO);
    cr_assert(strstr(err.msg, ": not a regular file (a FIFO)"), "%s", err.msg);
    dalle_safetensors_close(&st);
    unlink(tmp_path);
}

/* A tensor of n elements of dtype (2 or 4 bytes each), all `fill` except element `at`,
 * which is `bad`, opened from a file and taken as a model loader does; returns the closing
 * check's status, err filled. */
static dalle_status open_filled(const char *dtype, size_t esize, size_t n, uint32_t fill, size_t at,
                                uint32_t bad, dalle_error *err) {
    uint8_t *data = malloc(n * esize);
    cr_assert_not_null(data);
    for (size_t i = 0; i < n; i++)
        memcpy(data + i * esize, i == at ? &bad : &fill, esize); /* little-endian */
    file_bytes f = st_build(data, n * esize,
                            "{\"ok\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                            " \"w\":{\"dtype\":\"%s\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}",
                            dtype, n, n * esize);
    write_tmp(f.p, f.n);
    free(f.p);
    free(data);
    dalle_safetensors st;
    cr_assert_eq(dalle_safetensors_open(&st, tmp_path, err), DALLE_OK, "%s", err->msg);
    const dalle_st_tensor *t;
    const int64_t zero[1] = {0}, shape[1] = {(int64_t)n};
    cr_assert_eq(dalle_safetensors_take(&st, "ok", 1, zero, &t, err), DALLE_OK);
    cr_assert_eq(dalle_safetensors_take(&st, "w", 1, shape, &t, err), DALLE_OK);
    dalle_status s = dalle_safetensors_check_all_used(&st, err);
    dalle_safetensors_close(&st);
    unlink(tmp_path);
    return s;
}

/* NaN and ±Inf in the stored bits of each dtype, first, in the middle and last, are refused
 * with file, tensor and element named; the largest finite values and subnormals pass. */
Test(safetensors_check_all_used, non_finite_weights_are_refused) {
    static const struct {
        const char *dtype;
        size_t esize;
        uint32_t finite_max, bad[3]; /* +Inf, -Inf, a NaN */
    } K[] = {
        {"F16", 2, 0xfbff, {0x7c00, 0xfc00, 0x7e01}},
        {"BF16", 2, 0xff7f, {0x7f80, 0xff80, 0x7fc1}},
        {"F32", 4, 0xff7fffff, {0x7f800000, 0xff800000, 0x7fc00001}},
    };
    const size_t n = 10000, at[] = {0, 4097, n - 1};
    for (size_t k = 0; k < sizeof K / sizeof *K; k++) {
        dalle_error err = {0};
        cr_assert_eq(open_filled(K[k].dtype, K[k].esize, n, K[k].finite_max, 5, 1, &err), DALLE_OK,
                     "%s: %s", K[k].dtype, err.msg);
        for (size_t b = 0; b < 3; b++)
            for (size_t a = 0; a < sizeof at / sizeof *at; a++) {
                cr_assert_eq(open_filled(K[k].dtype, K[k].esize, n, 0, at[a], K[k].bad[b], &err),
                             DALLE_ERR_FORMAT, "%s bad %zu at %zu", K[k].dtype, b, at[a]);
                char want[128];
                snprintf(want, sizeof want, "tensor 'w' holds NaN or infinity (element %zu)",
                         at[a]);
                cr_assert(strstr(err.msg, want), "%s", err.msg);
                cr_assert(strstr(err.msg, "/tmp/dalle_st_"), "%s", err.msg);
            }
    }
}

Test(safetensors_open, empty_file) {
    write_tmp("", 0);
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, tmp_path, &err), DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, ": file is empty"), "%s", err.msg);
    cr_assert(strstr(err.msg, tmp_path), "%s", err.msg);
    cr_assert_null(st.map);
    dalle_safetensors_close(&st);
    unlink(tmp_path);
}

Test(safetensors_open, bad_file_is_unmapped) {
    file_bytes f = st_build(NULL, 0, "{\"a\":1}");
    write_tmp(f.p, f.n);
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, tmp_path, &err), DALLE_ERR_FORMAT);
    cr_assert_null(st.map);
    cr_assert_eq(st.map_size, 0);
    dalle_safetensors_close(&st);
    unlink(tmp_path);
    free(f.p);
}

Test(safetensors_open, real_file_is_mapped) {
    file_bytes f = valid_file();
    write_tmp(f.p, f.n);
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, tmp_path, &err), DALLE_OK, "%s", err.msg);
    cr_assert_not_null(st.map);
    cr_assert_eq(st.map_size, f.n);
    cr_assert_str_eq(st.label, tmp_path);
    check_valid(&st);
    const dalle_st_tensor *a = dalle_safetensors_find(&st, "a");
    cr_assert(a->data >= (const uint8_t *)st.map &&
              a->data + a->nbytes <= (const uint8_t *)st.map + f.n);
    dalle_safetensors_close(&st);
    cr_assert_null(st.map);
    dalle_safetensors_close(&st);
    unlink(tmp_path);
    free(f.p);
}
