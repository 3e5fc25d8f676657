/* image.c — pixels on the CPU: the VQGAN output to bytes (ops.h to_rgb8) and CLIP
 * preprocessing by a plan (ops.h clip_prep), the reference twin of
 * kernels/cuda/image.cu, written from the plan's contract alone (model/image_prep.c builds
 * plans and has its own host implementation, which tests/gpu/gpu_ops compares with this).
 * Pass 1 (both axes resampled) writes the intermediate uint8 image into a temporary
 * buffer: [in_h, out_w, 3] horizontal first, [out_h, in_w, 3] vertical first; the
 * second resample is evaluated only at the cropped output positions.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

/* One output of an axis: Σ_j s[(first[i] + j)·step]·coef[i, j], Q22, clipped to uint8. */
static uint8_t resample(const uint8_t *s, size_t step, const int32_t *first, const int32_t *count,
                        const int32_t *coef, int taps, int i) {
    const int32_t *k = coef + (size_t)i * taps;
    const uint8_t *p = s + (size_t)first[i] * step;
    int32_t acc = 1 << 21;
    for (int j = 0; j < count[i]; j++)
        acc += (int32_t)p[(size_t)j * step] * k[j];
    if (acc < 0)
        return 0;
    acc >>= 22;
    return acc > 255 ? 255 : (uint8_t)acc;
}

typedef struct {
    float *pixels;
    const uint8_t *rgb;
    const dalle_clip_prep_plan *pl;
} clip_prep_args;

/* One image b (its own temporary buffer). */
static void clip_prep_item(void *ctx, int64_t b, int thread) {
    const clip_prep_args *a = ctx;
    (void)thread;
    const dalle_clip_prep_plan *pl = a->pl;
    const int both = pl->horizontal && pl->vertical, S = pl->size, C = 3;
    const int tw = pl->vertical_first ? pl->in_w : pl->out_w; /* intermediate [th, tw, 3] */
    const int th = pl->vertical_first ? pl->out_h : pl->in_h;
    uint8_t *tmp = both ? malloc((size_t)th * tw * C) : NULL; // [th, tw, 3]
    DALLE_ASSERT(!both || tmp);
    const uint8_t *src = a->rgb + (size_t)b * pl->in_h * pl->in_w * C; // [in_h, in_w, 3]
    if (both)
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++)
                for (int c = 0; c < C; c++)
                    tmp[((size_t)y * tw + x) * C + c] =
                        pl->vertical_first
                            ? resample(src + (size_t)x * C + c, (size_t)pl->in_w * C, pl->first_y,
                                       pl->count_y, pl->coef_y, pl->taps_y, y)
                            : resample(src + (size_t)y * pl->in_w * C + c, C, pl->first_x,
                                       pl->count_x, pl->coef_x, pl->taps_x, x);
    float *out = a->pixels + (size_t)b * S * S * C; // [S, S, 3]
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < C; c++) {
                const int ry = pl->top + y, rx = pl->left + x;
                uint8_t u;
                if (both && pl->vertical_first) /* tmp [out_h, in_w]: horizontal at ry */
                    u = resample(tmp + (size_t)ry * tw * C + c, C, pl->first_x, pl->count_x,
                                 pl->coef_x, pl->taps_x, rx);
                else if (both) /* tmp [in_h, out_w]: vertical at rx */
                    u = resample(tmp + (size_t)rx * C + c, (size_t)tw * C, pl->first_y, pl->count_y,
                                 pl->coef_y, pl->taps_y, ry);
                else if (pl->horizontal)
                    u = resample(src + (size_t)ry * pl->in_w * C + c, C, pl->first_x, pl->count_x,
                                 pl->coef_x, pl->taps_x, rx);
                else if (pl->vertical)
                    u = resample(src + (size_t)rx * C + c, (size_t)pl->in_w * C, pl->first_y,
                                 pl->count_y, pl->coef_y, pl->taps_y, ry);
                else
                    u = src[((size_t)ry * pl->in_w + rx) * C + c];
                const float v = (float)(u * (1.0 / 255.0));
                out[((size_t)y * S + x) * C + c] = (v - pl->mean[c]) / pl->std[c];
            }
    free(tmp);
}

void dalle_cpu_clip_prep(dalle_backend *be, float *pixels, const uint8_t *rgb,
                         const dalle_clip_prep_plan *pl, int B) {
    DALLE_ASSERT(B >= 0 && pl->size >= 1);
    DALLE_ASSERT(pl->top >= 0 && pl->left >= 0 && pl->top + pl->size <= pl->out_h &&
                 pl->left + pl->size <= pl->out_w);
    clip_prep_args a = {.pixels = pixels, .rgb = rgb, .pl = pl};
    dalle_cpu_for(be, B, B > 1, clip_prep_item, &a); // one image per item
}

#define RGB8_BLOCK 4096 /* values per item */

typedef struct {
    uint8_t *y;
    const float *x;
    int64_t n;
    _Atomic int bad;
} rgb8_args;

static void rgb8_item(void *ctx, int64_t i, int thread) {
    rgb8_args *a = ctx;
    (void)thread;
    const int64_t lo = i * RGB8_BLOCK, hi = lo + RGB8_BLOCK < a->n ? lo + RGB8_BLOCK : a->n;
    int bad = 0;
    for (int64_t k = lo; k < hi; k++) {
        const float v = a->x[k] > 0 ? (a->x[k] < 1 ? a->x[k] : 1.0f) : 0.0f; // NaN → 0
        a->y[k] = (uint8_t)(v * 255.0f);
        bad |= !isfinite(a->x[k]);
    }
    if (bad)
        atomic_store(&a->bad, 1);
}

void dalle_cpu_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                       int32_t *nonfinite) {
    DALLE_ASSERT(n >= 0);
    rgb8_args a = {.y = y, .x = x, .n = n};
    dalle_cpu_for(be, (n + RGB8_BLOCK - 1) / RGB8_BLOCK, n >= DALLE_CPU_PAR_MIN, rgb8_item, &a);
    if (atomic_load(&a.bad) && nonfinite)
        *nonfinite = 1;
}
