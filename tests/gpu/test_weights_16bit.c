/* test_weights_16bit.c — the 16-bit weight upload that a CUDA backend asks for
 * (weight_dtype F16 / BF16, model_loader/weights.c), checked without a GPU: a host backend
 * that only stores bytes receives an F32 safetensors file full of edge values (ties,
 * subnormals, overflow, NaN, signed zeros) and a conv weight; every stored value must equal
 * gcc's own round-to-nearest-even conversion (_Float16, and bf16 by bit arithmetic), and
 * the conv weight must arrive in the [Cout, k, k, Cin] order.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_loader/weights.h"

static void *h_alloc(dalle_backend *be, size_t n) {
    (void)be;
    return malloc(n ? n : 1);
}
static void h_free(dalle_backend *be, void *p) {
    (void)be;
    free(p);
}
static void h_copy(dalle_backend *be, void *d, const void *s, size_t n) {
    (void)be;
    memcpy(d, s, n);
}
static void h_sync(dalle_backend *be) {
    (void)be;
}

static dalle_backend_ops fake_ops = {.name = "fake16",
                                     .alloc = h_alloc,
                                     .free = h_free,
                                     .to_device = h_copy,
                                     .to_host = h_copy,
                                     .sync = h_sync};

#define N_VALS 4096

/* Writes a safetensors file with "v" (F32 [N_VALS]) and "conv" (F32 [3, 2, 3, 3]). */
static void write_file(const char *path, const float *v, const float *conv) {
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"conv\":{\"dtype\":\"F32\",\"shape\":[3,2,3,3],\"data_offsets\":[0,216]},"
                     "\"v\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[216,%d]}}",
                     N_VALS, 216 + 4 * N_VALS);
    while (n % 8)
        hdr[n++] = ' ';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    uint64_t len = (uint64_t)n;
    fwrite(&len, 8, 1, f);
    fwrite(hdr, 1, (size_t)n, f);
    fwrite(conv, 4, 54, f);
    fwrite(v, 4, N_VALS, f);
    fclose(f);
}

static uint16_t bf16_rne(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void run(dalle_dtype dt) {
    float *v = malloc(N_VALS * sizeof *v), conv[54];
    int i = 0;
    const float special[] = {0.0f,
                             -0.0f,
                             1.0f,
                             -1.0f,
                             65504.0f,
                             65519.0f,
                             65520.0f,
                             70000.0f,
                             -65520.0f,
                             INFINITY,
                             -INFINITY,
                             NAN,
                             6.1035156e-05f /* 2^-14 */,
                             5.9604645e-08f /* 2^-24 */,
                             2.9802322e-08f /* 2^-25: tie → 0 */,
                             4.4703484e-08f /* 1.5·2^-25 */,
                             8.9406967e-08f /* 1.5·2^-24 */,
                             1.0f + 1.0f / 2048,
                             1.0f + 3.0f / 2048,
                             3.3895314e38f,
                             1e-40f};
    for (; i < (int)(sizeof special / sizeof *special); i++)
        v[i] = special[i];
    uint64_t z = 12345;
    for (; i < N_VALS; i++) { /* random bit patterns over all exponents */
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(z >> 32);
        float f;
        memcpy(&f, &u, 4);
        v[i] = isnan(f) ? 1.5f : f;
    }
    for (int k = 0; k < 54; k++)
        conv[k] = (float)k; /* torch order [o][c][y][x] */
    char path[] = "/tmp/dalle_w16_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_file(path, v, conv);

    dalle_backend_ops ops = fake_ops;
    ops.weight_dtype = dt;
    dalle_backend be = {.ops = &ops, .impl = NULL};
    dalle_safetensors st;
    dalle_error err = {0};
    cr_assert_eq(dalle_safetensors_open(&st, path, &err), DALLE_OK, "%s", err.msg);
    dalle_binder b;
    dalle_binder_init(&b, &be);
    dalle_tensor tv, tc;
    const int64_t shape[1] = {N_VALS};
    cr_assert_eq(dalle_binder_take(&b, &st, &tv, 1, shape, &err, "v"), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_binder_take_conv(&b, &st, &tc, 3, 2, 3, &err, "conv"), DALLE_OK, "%s",
                 err.msg);
    void *block = NULL;
    cr_assert_eq(dalle_binder_upload(&b, &block, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(tv.dtype, dt);
    const uint16_t *h = tv.data;
    for (int k = 0; k < N_VALS; k++) {
        uint16_t want;
        if (dt == DALLE_F16) {
            _Float16 f = (_Float16)v[k];
            memcpy(&want, &f, 2);
            if (isnan(v[k]))
                cr_assert((h[k] & 0x7c00u) == 0x7c00u && (h[k] & 0x3ffu), "NaN kept");
            else
                cr_assert_eq(h[k], want, "f16 of %a (#%d): got 0x%04x want 0x%04x", v[k], k, h[k],
                             want);
        } else {
            want = bf16_rne(v[k]);
            cr_assert_eq(h[k], want, "bf16 of %a (#%d): got 0x%04x want 0x%04x", v[k], k, h[k],
                         want);
        }
    }
    /* conv: dst[o, y, x, c] = src[o, c, y, x], values are small integers (exact in 16 bits) */
    const uint16_t *hc = tc.data;
    for (int o = 0; o < 3; o++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++)
                for (int c = 0; c < 2; c++) {
                    const float src = conv[((o * 2 + c) * 3 + y) * 3 + x];
                    uint16_t want;
                    if (dt == DALLE_F16) {
                        _Float16 f = (_Float16)src;
                        memcpy(&want, &f, 2);
                    } else {
                        want = bf16_rne(src);
                    }
                    cr_assert_eq(hc[((o * 3 + y) * 3 + x) * 2 + c], want);
                }
    free(block);
    dalle_binder_free(&b);
    dalle_safetensors_close(&st);
    unlink(path);
    free(v);
}

Test(weights_16bit, f16_round_to_nearest_even) {
    run(DALLE_F16);
}

Test(weights_16bit, bf16_round_to_nearest_even) {
    run(DALLE_BF16);
}
