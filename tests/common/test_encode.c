/* test_encode.c — base64 against the RFC 4648 vectors and random round trips; JPEG encoding
 * decoded back with TurboJPEG (size, quality, subsampling, buffer reuse, limits). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/base64.h"
#include "common/jpeg.h"

Test(base64, rfc4648_vectors) {
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        size_t n = strlen(in[i]);
        cr_assert_eq(dalle_base64_encoded_len(n), strlen(want[i]));
        dalle_base64_encode((const uint8_t *)in[i], n, out);
        cr_assert_str_eq(out, want[i]);
    }
}

static int b64val(char c) {
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(a, c);
    return p && c ? (int)(p - a) : -1;
}

Test(base64, random_round_trip_no_line_breaks) {
    srand(7);
    for (int len = 0; len < 300; len++) {
        uint8_t in[300], back[300];
        for (int i = 0; i < len; i++)
            in[i] = (uint8_t)rand();
        char out[512];
        dalle_base64_encode(in, (size_t)len, out);
        size_t m = strlen(out);
        cr_assert_eq(m, dalle_base64_encoded_len((size_t)len));
        cr_assert_null(strchr(out, '\n'));
        size_t k = 0;
        for (size_t i = 0; i < m; i += 4) {
            int v[4];
            for (int j = 0; j < 4; j++)
                v[j] = out[i + j] == '=' ? 0 : b64val(out[i + j]);
            for (int j = 0; j < 4; j++)
                cr_assert_geq(v[j], 0);
            uint32_t w = (uint32_t)v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
            uint8_t b[3] = {w >> 16, (w >> 8) & 255, w & 255};
            for (int j = 0; j < 3 && k < (size_t)len; j++)
                back[k++] = b[j];
        }
        cr_assert_eq(k, (size_t)len);
        cr_assert_arr_eq(in, back, (size_t)len);
    }
}

/* A smooth test picture, so that JPEG error is small and measurable. */
static void picture(uint8_t *rgb, int w, int h) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)(128 + 100 * sin(x * 0.05) * cos(y * 0.05));
        }
}

static double decode_psnr(const uint8_t *jpg, size_t n, const uint8_t *ref, int w, int h,
                          int *subsamp) {
    tjhandle d = tjInitDecompress();
    int dw, dh, ss, cs;
    cr_assert_eq(tjDecompressHeader3(d, jpg, n, &dw, &dh, &ss, &cs), 0);
    cr_assert_eq(dw, w);
    cr_assert_eq(dh, h);
    *subsamp = ss;
    uint8_t *out = malloc((size_t)w * h * 3);
    cr_assert_eq(tjDecompress2(d, jpg, n, out, w, 0, h, TJPF_RGB, 0), 0);
    double se = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        se += (double)(out[i] - ref[i]) * (out[i] - ref[i]);
    free(out);
    tjDestroy(d);
    double mse = se / ((double)w * h * 3);
    return mse == 0 ? 99 : 10 * log10(255.0 * 255.0 / mse);
}

Test(jpeg, encodes_decodable_256x256_with_settings) {
    uint8_t *rgb = malloc(256 * 256 * 3);
    picture(rgb, 256, 256);
    dalle_jpeg_encoder *e;
    cr_assert_eq(dalle_jpeg_encoder_new(&e, NULL), DALLE_OK);
    const uint8_t *jpg;
    size_t n;
    cr_assert_eq(dalle_jpeg_encode(e, rgb, 256, 256, 90, DALLE_SUBSAMP_420, &jpg, &n, NULL),
                 DALLE_OK);
    cr_assert(n > 100 && jpg[0] == 0xFF && jpg[1] == 0xD8);
    int ss;
    double psnr90 = decode_psnr(jpg, n, rgb, 256, 256, &ss);
    cr_assert_eq(ss, TJSAMP_420);
    cr_assert(psnr90 > 35, "PSNR at quality 90: %.1f dB", psnr90);
    size_t n90 = n;
    /* the same encoder, other settings → other output */
    cr_assert_eq(dalle_jpeg_encode(e, rgb, 256, 256, 50, DALLE_SUBSAMP_444, &jpg, &n, NULL),
                 DALLE_OK);
    double psnr50 = decode_psnr(jpg, n, rgb, 256, 256, &ss);
    cr_assert_eq(ss, TJSAMP_444);
    cr_assert(psnr50 < psnr90);
    cr_assert(n != n90);
    /* a smaller then a larger image through one encoder */
    cr_assert_eq(dalle_jpeg_encode(e, rgb, 16, 16, 90, DALLE_SUBSAMP_420, &jpg, &n, NULL),
                 DALLE_OK);
    uint8_t *big = malloc(512 * 300 * 3);
    picture(big, 512, 300);
    cr_assert_eq(dalle_jpeg_encode(e, big, 512, 300, 90, DALLE_SUBSAMP_420, &jpg, &n, NULL),
                 DALLE_OK);
    decode_psnr(jpg, n, big, 512, 300, &ss);
    free(big);
    dalle_jpeg_encoder_free(e);
    free(rgb);
}

Test(jpeg, limits) {
    dalle_jpeg_encoder *e;
    dalle_error err = {0};
    cr_assert_eq(dalle_jpeg_encoder_new(&e, &err), DALLE_OK);
    uint8_t px[3] = {1, 2, 3};
    const uint8_t *jpg;
    size_t n;
    cr_assert_eq(dalle_jpeg_encode(e, px, 1, 1, 0, DALLE_SUBSAMP_420, &jpg, &n, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_eq(dalle_jpeg_encode(e, px, 1, 1, 101, DALLE_SUBSAMP_420, &jpg, &n, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_eq(dalle_jpeg_encode(e, px, 1, 1, 90, (dalle_subsamp)3, &jpg, &n, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_eq(dalle_jpeg_encode(e, px, 0, 1, 90, DALLE_SUBSAMP_420, &jpg, &n, &err),
                 DALLE_ERR_INVALID_ARG);
    cr_assert_eq(
        dalle_jpeg_encode(e, px, 1, DALLE_JPEG_MAX_SIDE + 1, 90, DALLE_SUBSAMP_420, &jpg, &n, &err),
        DALLE_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "8192"));
    cr_assert_eq(dalle_jpeg_encode(e, px, 1, 1, 100, DALLE_SUBSAMP_420, &jpg, &n, &err), DALLE_OK);
    cr_assert_eq(dalle_jpeg_encode(e, px, 1, 1, 1, DALLE_SUBSAMP_444, &jpg, &n, &err), DALLE_OK);
    dalle_jpeg_encoder_free(e);
    dalle_jpeg_encoder_free(NULL);
}

Test(jpeg, default_subsampling_and_names) {
    /* full chroma below DALLE_JPEG_FULL_CHROMA_BELOW on either side, 4:2:0 from there up */
    cr_assert_eq(dalle_jpeg_default_subsampling(64, 64), 444);
    cr_assert_eq(dalle_jpeg_default_subsampling(DALLE_JPEG_FULL_CHROMA_BELOW - 1, 1024), 444);
    cr_assert_eq(dalle_jpeg_default_subsampling(1024, DALLE_JPEG_FULL_CHROMA_BELOW - 1), 444);
    cr_assert_eq(
        dalle_jpeg_default_subsampling(DALLE_JPEG_FULL_CHROMA_BELOW, DALLE_JPEG_FULL_CHROMA_BELOW),
        420);
    dalle_subsamp ss = DALLE_SUBSAMP_422;
    dalle_error err = {0};
    cr_assert_eq(dalle_jpeg_subsamp_from(444, &ss, &err), DALLE_OK);
    cr_assert_eq(ss, DALLE_SUBSAMP_444);
    cr_assert_eq(dalle_jpeg_subsamp_from(422, &ss, &err), DALLE_OK);
    cr_assert_eq(ss, DALLE_SUBSAMP_422);
    cr_assert_eq(dalle_jpeg_subsamp_from(420, &ss, &err), DALLE_OK);
    cr_assert_eq(ss, DALLE_SUBSAMP_420);
    cr_assert_eq(dalle_jpeg_subsamp_from(411, &ss, &err), DALLE_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "444, 422 or 420, got 411"));
}
