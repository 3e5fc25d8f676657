/* jpeg.h — JPEG encoding of packed RGB uint8 images with the TurboJPEG 2.x API.
 *
 * Contract: a dalle_jpeg_encoder owns one TurboJPEG handle and one output buffer sized for
 * the largest image it has seen; it is used by one thread at a time (keep one per encode
 * thread). dalle_jpeg_encode returns a pointer into that buffer, valid until the next call
 * on the same encoder. Sizes are checked in 64-bit arithmetic; images above
 * DALLE_JPEG_MAX_SIDE on a side are refused (DALLE_ERR_INVALID_ARG).
 */
#ifndef DALLE_COMMON_JPEG_H
#define DALLE_COMMON_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

#define DALLE_JPEG_MAX_SIDE 8192

typedef enum { DALLE_SUBSAMP_444 = 0, DALLE_SUBSAMP_422, DALLE_SUBSAMP_420 } dalle_subsamp;

/* Images smaller than this on a side are encoded with full chroma (4:4:4) by default: 4:2:0
 * averages the colour of each 2×2 block, which smears the flat colours of small pictures
 * (about +22 % bytes at 64×64), while at 256×256 it saves about a third of the bytes. */
#define DALLE_JPEG_FULL_CHROMA_BELOW 256

/* The default subsampling of a width × height image, as the number the options use: 444 below
 * DALLE_JPEG_FULL_CHROMA_BELOW on either side, else 420. */
int dalle_jpeg_default_subsampling(int width, int height);

/* 444, 422 or 420 → *out; anything else: DALLE_ERR_INVALID_ARG. */
dalle_status dalle_jpeg_subsamp_from(int subsampling, dalle_subsamp *out, dalle_error *err);

typedef struct dalle_jpeg_encoder dalle_jpeg_encoder;

dalle_status dalle_jpeg_encoder_new(dalle_jpeg_encoder **out, dalle_error *err);
void dalle_jpeg_encoder_free(dalle_jpeg_encoder *enc);

/* rgb: [height, width, 3] packed; quality 1..100 (the server default is 90, with
 * dalle_jpeg_default_subsampling).
 * *jpeg / *size: the encoded file. */
dalle_status dalle_jpeg_encode(dalle_jpeg_encoder *enc, const uint8_t *rgb, int width, int height,
                               int quality, dalle_subsamp subsamp, const uint8_t **jpeg,
                               size_t *size, dalle_error *err);

/* n R×R images rgb [n, R, R, 3] as JPEG files into out[k]: jpeg malloc'ed (the caller frees
 * it, also after an error), index = index[k] (k when NULL), score = scores[k] (0 when NULL). */
dalle_status dalle_jpeg_encode_images(dalle_jpeg_encoder *enc, const uint8_t *rgb, int n, int R,
                                      int quality, dalle_subsamp subsamp, const int32_t *index,
                                      const float *scores, dalle_image *out, dalle_error *err);

#endif /* DALLE_COMMON_JPEG_H */
