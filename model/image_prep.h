/* image_prep.h — CLIP image preprocessing on the host (docs/model-spec.md §6.2): PIL-exact bicubic
 * resize of uint8 images, then center crop, ×1/255 and per-channel normalisation with
 * CLIP's mean and std, giving the float NHWC pixels the vision tower takes.
 *
 * Contract: a dalle_bicubic is a plan for one (source size → output size, channels): its
 * fixed-point coefficients and intermediate buffer are computed and allocated once at init;
 * running it allocates nothing and writes only the plan's own buffer and `dst`, so one plan
 * serves one thread at a time. The output equals Pillow's Image.resize(…, BICUBIC) byte for
 * byte (8-bit images, reducing_gap None, Pillow 13's choice of pass order). A
 * dalle_image_prep is the same for the full CLIP preprocessing of a fixed source size, as
 * transformers' CLIPImageProcessor (PIL backend) does it: the short side is resized to S
 * and the long side to int(S·long/short), the crop starts at ((h − S) div 2, (w − S) div 2),
 * then v = float(u · (1/255)) in double and (v − mean) / std in float.
 *
 * Dimension letters: B images, H×W source, S output side.
 */
#ifndef DALLE_MODEL_IMAGE_PREP_H
#define DALLE_MODEL_IMAGE_PREP_H

#include <stdint.h>

#include "dalle.h"
#include "kernels/ops.h"

#define DALLE_IMAGE_MAX_SIDE 16384 /* larger sources or outputs are rejected */

/* One axis of a resize: output i reads taps first[i] … first[i] + count[i] − 1 with the
 * Q22 fixed-point weights coef[i·taps …]. */
typedef struct {
    int in, out, taps;
    int32_t *first, *count; // [out]
    int32_t *coef;          // [out, taps]
} dalle_resample_axis;

typedef struct {
    int in_w, in_h, out_w, out_h, channels;
    dalle_resample_axis x, y;
    int vertical_first; // Pillow ≥ 13 order (see image_prep.c)
    int span0, span;    // source rows (or columns, vertical first) the first pass covers
    uint8_t *tmp;       // first pass output: [span, out_w, C] or [out_h, span, C]
} dalle_bicubic;

/* Plan a resize of [in_h, in_w, channels] uint8 to [out_h, out_w, channels]; sides in
 * [1, DALLE_IMAGE_MAX_SIDE], channels in [1, 4]. */
dalle_status dalle_bicubic_init(dalle_bicubic *r, int in_w, int in_h, int out_w, int out_h,
                                int channels, dalle_error *err);

/* dst [out_h, out_w, C] = bicubic(src [in_h, in_w, C]). dst must not alias src. */
void dalle_bicubic_run(dalle_bicubic *r, const uint8_t *src, uint8_t *dst);

void dalle_bicubic_free(dalle_bicubic *r);

typedef struct {
    int in_w, in_h, size;  // W, H, S
    int top, left;         // crop offsets in the resized image
    dalle_bicubic bicubic; // [H, W, 3] → resized [rh, rw, 3] (a copy when nothing changes)
    uint8_t *resized;      // [rh, rw, 3]
} dalle_image_prep;

/* Plan the preprocessing of W×H RGB images to S×S. */
dalle_status dalle_image_prep_init(dalle_image_prep *p, int in_w, int in_h, int size,
                                   dalle_error *err);

/* pixels [B, S, S, 3] (host) from rgb [B, H, W, 3] uint8 (host). */
void dalle_image_prep_run(dalle_image_prep *p, const uint8_t *rgb, int B, float *pixels);

void dalle_image_prep_free(dalle_image_prep *p);

/* The same preprocessing as an ops.h clip_prep plan on `be`: its six index/coefficient
 * arrays in one backend allocation, *mem (free it with be's free). clip_prep with the plan
 * writes what dalle_image_prep_run writes, bit for bit. */
dalle_status dalle_image_prep_plan(const dalle_image_prep *p, dalle_backend *be,
                                   dalle_clip_prep_plan *plan, void **mem, dalle_error *err);

#endif /* DALLE_MODEL_IMAGE_PREP_H */
