/* jpeg.c — TurboJPEG 2.x encoder wrapper (see jpeg.h). The output buffer is preallocated
 * with tjBufSize() and passed with TJFLAG_NOREALLOC, so TurboJPEG never reallocates it. */
#include "common/jpeg.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/error.h"

struct dalle_jpeg_encoder {
    tjhandle tj;
    unsigned char *buf;
    unsigned long cap;
};

dalle_status dalle_jpeg_encoder_new(dalle_jpeg_encoder **out, dalle_error *err) {
    *out = NULL;
    dalle_jpeg_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    e->tj = tjInitCompress();
    if (!e->tj) {
        free(e);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "tjInitCompress failed");
    }
    *out = e;
    return DALLE_OK;
}

void dalle_jpeg_encoder_free(dalle_jpeg_encoder *e) {
    if (!e)
        return;
    if (e->tj)
        tjDestroy(e->tj);
    tjFree(e->buf);
    free(e);
}

int dalle_jpeg_default_subsampling(int width, int height) {
    return width < DALLE_JPEG_FULL_CHROMA_BELOW || height < DALLE_JPEG_FULL_CHROMA_BELOW ? 444
                                                                                         : 420;
}

dalle_status dalle_jpeg_subsamp_from(int subsampling, dalle_subsamp *out, dalle_error *err) {
    switch (subsampling) {
    case 444: *out = DALLE_SUBSAMP_444; return DALLE_OK;
    case 422: *out = DALLE_SUBSAMP_422; return DALLE_OK;
    case 420: *out = DALLE_SUBSAMP_420; return DALLE_OK;
    default:
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "subsampling must be 444, 422 or 420, got %d", subsampling);
    }
}

dalle_status dalle_jpeg_encode(dalle_jpeg_encoder *e, const uint8_t *rgb, int width, int height,
                               int quality, dalle_subsamp subsamp, const uint8_t **jpeg,
                               size_t *size, dalle_error *err) {
    static const int TJ_SUBSAMP[] = {TJSAMP_444, TJSAMP_422, TJSAMP_420};
    if (quality < 1 || quality > 100)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "JPEG quality must be in [1, 100], got %d", quality);
    if ((int)subsamp < 0 || (int)subsamp > DALLE_SUBSAMP_420)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "unknown JPEG subsampling %d",
                               (int)subsamp);
    const int ss = TJ_SUBSAMP[subsamp];
    if (width < 1 || height < 1 || width > DALLE_JPEG_MAX_SIDE || height > DALLE_JPEG_MAX_SIDE)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "image size %dx%d outside 1..%d", width,
                               height, DALLE_JPEG_MAX_SIDE);
    unsigned long need = tjBufSize(width, height, ss);
    if (need == (unsigned long)-1)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "tjBufSize: %s", tjGetErrorStr2(e->tj));
    if (need > e->cap) {
        unsigned char *b = tjAlloc((int)need);
        if (!b)
            return dalle_error_set(err, DALLE_ERR_NOMEM, "cannot allocate %lu bytes", need);
        tjFree(e->buf);
        e->buf = b;
        e->cap = need;
    }
    unsigned char *dst = e->buf;
    unsigned long len = e->cap;
    if (tjCompress2(e->tj, rgb, width, 0, height, TJPF_RGB, &dst, &len, ss, quality,
                    TJFLAG_NOREALLOC | TJFLAG_ACCURATEDCT) != 0)
        return dalle_error_set(err, DALLE_ERR_BACKEND, "JPEG encoding failed: %s",
                               tjGetErrorStr2(e->tj));
    DALLE_ASSERT(dst == e->buf);
    *jpeg = dst;
    *size = len;
    return DALLE_OK;
}

dalle_status dalle_jpeg_encode_images(dalle_jpeg_encoder *enc, const uint8_t *rgb, int n, int R,
                                      int quality, dalle_subsamp subsamp, const int32_t *index,
                                      const float *scores, dalle_image *out, dalle_error *err) {
    for (int k = 0; k < n; k++) {
        const uint8_t *jpg;
        size_t size;
        dalle_status st = dalle_jpeg_encode(enc, rgb + (size_t)k * R * R * 3, R, R, quality,
                                            subsamp, &jpg, &size, err);
        if (st == DALLE_OK && !(out[k].jpeg = malloc(size)))
            st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
        if (st != DALLE_OK)
            return st;
        memcpy(out[k].jpeg, jpg, size);
        out[k].jpeg_size = size;
        out[k].index = index ? index[k] : k;
        out[k].score = scores ? scores[k] : 0.0f;
    }
    return DALLE_OK;
}
