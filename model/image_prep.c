/* image_prep.c — PIL-exact bicubic resize and CLIP preprocessing (see image_prep.h;
 * docs/model-spec.md §6.2).
 *
 * The resize reproduces Pillow's 8-bit two-pass convolution resampler, from its documented
 * behaviour: per axis, scale = in/out and the kernel is stretched by max(scale, 1); output i
 * is centred at (i + 0.5)·scale and reads the inputs [int(centre − support + 0.5),
 * int(centre + support + 0.5)) clamped to the image, support = 2·max(scale, 1); each tap
 * weighs cubic((j − centre + 0.5) / max(scale, 1)) with Keys' a = −0.5; the weights are
 * divided by their sum, then turned into Q22 fixed point rounded half away from zero. A
 * pass starts every sum at 2^21 (one half), shifts right by 22 and clips to [0, 255]. The
 * horizontal pass runs first (into uint8), then the vertical one; an axis whose size does
 * not change is not resampled at all.
 */
#include "model/image_prep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define PREC_BITS 22 /* fixed-point fraction bits of the weights */

/* CLIP's per-channel normalisation (OpenAI; HF OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};

/* Keys' cubic convolution kernel with a = −0.5, support 2. */
static double cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static void axis_free(dalle_resample_axis *ax) {
    free(ax->first);
    free(ax->count);
    free(ax->coef);
    memset(ax, 0, sizeof *ax);
}

static dalle_status axis_init(dalle_resample_axis *ax, int in, int out, dalle_error *err) {
    memset(ax, 0, sizeof *ax);
    const double scale = (double)in / out;
    const double stretch = scale < 1.0 ? 1.0 : scale; // the kernel widens only when reducing
    const double support = 2.0 * stretch, inv = 1.0 / stretch;
    ax->in = in;
    ax->out = out;
    ax->taps = (int)ceil(support) * 2 + 1;
    ax->first = malloc((size_t)out * sizeof *ax->first);
    ax->count = malloc((size_t)out * sizeof *ax->count);
    ax->coef = calloc((size_t)out * ax->taps, sizeof *ax->coef);
    double *w = malloc((size_t)ax->taps * sizeof *w);
    if (!ax->first || !ax->count || !ax->coef || !w) {
        free(w);
        axis_free(ax);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory planning a %d → %d resize", in,
                               out);
    }
    for (int i = 0; i < out; i++) {
        const double centre = (i + 0.5) * scale;
        int lo = (int)(centre - support + 0.5), hi = (int)(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        const int n = hi - lo;
        DALLE_ASSERT(n >= 1 && n <= ax->taps);
        double sum = 0;
        for (int j = 0; j < n; j++) {
            w[j] = cubic((j + lo - centre + 0.5) * inv);
            sum += w[j];
        }
        int32_t *k = ax->coef + (size_t)i * ax->taps; // [taps]
        for (int j = 0; j < n; j++) {
            const double v = (sum != 0.0 ? w[j] / sum : w[j]) * (1 << PREC_BITS);
            k[j] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        ax->first[i] = lo;
        ax->count[i] = n;
    }
    free(w);
    return DALLE_OK;
}

static inline uint8_t clip8(int32_t acc) {
    if (acc < 0)
        return 0;
    acc >>= PREC_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/* One line along an axis: dst[i·dstep] = Σ_j src[(first[i] − shift + j)·sstep]·coef[i, j]
 * in fixed point, for every output i. */
static void resample_line(const dalle_resample_axis *ax, const uint8_t *src, size_t sstep,
                          int shift, uint8_t *dst, size_t dstep) {
    for (int i = 0; i < ax->out; i++) {
        const int32_t *k = ax->coef + (size_t)i * ax->taps;
        const uint8_t *s = src + (size_t)(ax->first[i] - shift) * sstep;
        int32_t acc = 1 << (PREC_BITS - 1);
        for (int j = 0; j < ax->count[i]; j++)
            acc += (int32_t)s[(size_t)j * sstep] * k[j];
        dst[(size_t)i * dstep] = clip8(acc);
    }
}

dalle_status dalle_bicubic_init(dalle_bicubic *r, int in_w, int in_h, int out_w, int out_h,
                                int channels, dalle_error *err) {
    memset(r, 0, sizeof *r);
    const int sides[4] = {in_w, in_h, out_w, out_h};
    for (int i = 0; i < 4; i++)
        if (sides[i] < 1 || sides[i] > DALLE_IMAGE_MAX_SIDE)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                                   "resize %dx%d → %dx%d: sides must be in [1, %d]", in_w, in_h,
                                   out_w, out_h, DALLE_IMAGE_MAX_SIDE);
    if (channels < 1 || channels > 4)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "resize: %d channels; 1 to 4 are supported", channels);
    *r = (dalle_bicubic){
        .in_w = in_w, .in_h = in_h, .out_w = out_w, .out_h = out_h, .channels = channels};
    dalle_status s = axis_init(&r->x, in_w, out_w, err);
    if (s == DALLE_OK)
        s = axis_init(&r->y, in_h, out_h, err);
    if (s == DALLE_OK && in_w != out_w && in_h != out_h) {
        r->vertical_first = in_h > out_h && in_h - out_h > 2 * (in_w - out_w);
        const dalle_resample_axis *first = r->vertical_first ? &r->x : &r->y;
        r->span0 = first->first[0];
        r->span = first->first[first->out - 1] + first->count[first->out - 1] - r->span0;
        const size_t n = (size_t)r->span * (r->vertical_first ? out_h : out_w) * channels;
        if (!(r->tmp = malloc(n)))
            s = dalle_error_set(err, DALLE_ERR_NOMEM,
                                "out of memory planning a %dx%d → %dx%d resize", in_w, in_h, out_w,
                                out_h);
    }
    if (s != DALLE_OK)
        dalle_bicubic_free(r);
    return s;
}

/* Horizontal pass over `rows` rows: dst[y, i, :] from src[y, first[i] − shift + j, :]. */
static void pass_x(const dalle_bicubic *r, const uint8_t *src, size_t src_row, int shift, int rows,
                   uint8_t *dst, size_t dst_row) {
    const int C = r->channels;
    for (int y = 0; y < rows; y++)
        for (int c = 0; c < C; c++)
            resample_line(&r->x, src + (size_t)y * src_row + c, C, shift,
                          dst + (size_t)y * dst_row + c, C);
}

/* Vertical pass over the first `width` bytes of the rows: dst[i, x] from
 * src[first[i] − shift + j, x]. */
static void pass_y(const dalle_bicubic *r, const uint8_t *src, size_t src_row, int shift,
                   size_t width, uint8_t *dst, size_t dst_row) {
    for (size_t x = 0; x < width; x++)
        resample_line(&r->y, src + x, src_row, shift, dst + x, dst_row);
}

void dalle_bicubic_run(dalle_bicubic *r, const uint8_t *src, uint8_t *dst) {
    const int C = r->channels;
    const size_t in_row = (size_t)r->in_w * C, out_row = (size_t)r->out_w * C;
    const int horizontal = r->in_w != r->out_w, vertical = r->in_h != r->out_h;
    if (!horizontal && !vertical) {
        memcpy(dst, src, (size_t)r->in_h * in_row);
    } else if (!vertical) {
        pass_x(r, src, in_row, 0, r->in_h, dst, out_row);
    } else if (!horizontal) {
        pass_y(r, src, in_row, 0, in_row, dst, out_row);
    } else if (r->vertical_first) { // tmp [out_h, span columns, C]
        const size_t tmp_row = (size_t)r->span * C;
        pass_y(r, src + (size_t)r->span0 * C, in_row, 0, tmp_row, r->tmp, tmp_row);
        pass_x(r, r->tmp, tmp_row, r->span0, r->out_h, dst, out_row);
    } else { // tmp [span rows, out_w, C]
        pass_x(r, src + (size_t)r->span0 * in_row, in_row, 0, r->span, r->tmp, out_row);
        pass_y(r, r->tmp, out_row, r->span0, out_row, dst, out_row);
    }
}

void dalle_bicubic_free(dalle_bicubic *r) {
    axis_free(&r->x);
    axis_free(&r->y);
    free(r->tmp);
    memset(r, 0, sizeof *r);
}

dalle_status dalle_image_prep_init(dalle_image_prep *p, int in_w, int in_h, int size,
                                   dalle_error *err) {
    memset(p, 0, sizeof *p);
    if (size < 1 || size > DALLE_IMAGE_MAX_SIDE || in_w < 1 || in_h < 1 ||
        in_w > DALLE_IMAGE_MAX_SIDE || in_h > DALLE_IMAGE_MAX_SIDE)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "image preprocessing %dx%d → %d: sides must be in [1, %d]", in_w,
                               in_h, size, DALLE_IMAGE_MAX_SIDE);
    // short side → S, long side → int(S·long/short), as HF's shortest_edge resize
    int rw = size, rh = size;
    if (in_w <= in_h)
        rh = (int)((double)size * in_h / in_w);
    else
        rw = (int)((double)size * in_w / in_h);
    if (rw > DALLE_IMAGE_MAX_SIDE || rh > DALLE_IMAGE_MAX_SIDE)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "image preprocessing %dx%d → %d: the resized long side exceeds %d",
                               in_w, in_h, size, DALLE_IMAGE_MAX_SIDE);
    p->in_w = in_w;
    p->in_h = in_h;
    p->size = size;
    p->top = (rh - size) / 2;
    p->left = (rw - size) / 2;
    dalle_status s = dalle_bicubic_init(&p->bicubic, in_w, in_h, rw, rh, 3, err);
    if (s == DALLE_OK && !(p->resized = malloc((size_t)rw * rh * 3)))
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory for a %dx%d image", rw, rh);
    if (s != DALLE_OK)
        dalle_image_prep_free(p);
    return s;
}

void dalle_image_prep_run(dalle_image_prep *p, const uint8_t *rgb, int B, float *pixels) {
    DALLE_ASSERT(B >= 0);
    const int S = p->size, rw = p->bicubic.out_w;
    float mean[3], std[3]; // the float32 constants numpy normalises with
    for (int c = 0; c < 3; c++) {
        mean[c] = (float)CLIP_MEAN[c];
        std[c] = (float)CLIP_STD[c];
    }
    for (int b = 0; b < B; b++) {
        dalle_bicubic_run(&p->bicubic, rgb + (size_t)b * p->in_h * p->in_w * 3, p->resized);
        float *out = pixels + (size_t)b * S * S * 3; // [S, S, 3]
        for (int y = 0; y < S; y++) {
            const uint8_t *row = p->resized + ((size_t)(p->top + y) * rw + p->left) * 3;
            for (int i = 0; i < S * 3; i++) {
                const float v = (float)(row[i] * (1.0 / 255.0));
                out[(size_t)y * S * 3 + i] = (v - mean[i % 3]) / std[i % 3];
            }
        }
    }
}

dalle_status dalle_image_prep_plan(const dalle_image_prep *p, dalle_backend *be,
                                   dalle_clip_prep_plan *plan, void **mem, dalle_error *err) {
    const dalle_bicubic *r = &p->bicubic;
    const dalle_resample_axis *ax[2] = {&r->x, &r->y};
    size_t n[2], total = 0; // int32 per axis: first [out], count [out], coef [out, taps]
    for (int a = 0; a < 2; a++)
        total += n[a] = (size_t)ax[a]->out * (2 + ax[a]->taps);
    int32_t *d = *mem = be->ops->alloc(be, total * sizeof *d);
    if (!d)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory for a %dx%d → %d plan",
                               be->ops->name, p->in_w, p->in_h, p->size);
    const int32_t *part[2][3];
    for (int a = 0; a < 2; a++) {
        const size_t out = (size_t)ax[a]->out;
        const int32_t *src[3] = {ax[a]->first, ax[a]->count, ax[a]->coef};
        const size_t len[3] = {out, out, out * ax[a]->taps};
        for (int k = 0; k < 3; k++) {
            be->ops->to_device(be, d, src[k], len[k] * sizeof *d);
            part[a][k] = d;
            d += len[k];
        }
    }
    *plan = (dalle_clip_prep_plan){.in_w = p->in_w,
                                   .in_h = p->in_h,
                                   .out_w = r->out_w,
                                   .out_h = r->out_h,
                                   .size = p->size,
                                   .top = p->top,
                                   .left = p->left,
                                   .horizontal = r->out_w != p->in_w,
                                   .vertical = r->out_h != p->in_h,
                                   .vertical_first = r->vertical_first,
                                   .taps_x = r->x.taps,
                                   .taps_y = r->y.taps,
                                   .first_x = part[0][0],
                                   .count_x = part[0][1],
                                   .coef_x = part[0][2],
                                   .first_y = part[1][0],
                                   .count_y = part[1][1],
                                   .coef_y = part[1][2]};
    for (int c = 0; c < 3; c++) {
        plan->mean[c] = (float)CLIP_MEAN[c];
        plan->std[c] = (float)CLIP_STD[c];
    }
    return DALLE_OK;
}

void dalle_image_prep_free(dalle_image_prep *p) {
    dalle_bicubic_free(&p->bicubic);
    free(p->resized);
    memset(p, 0, sizeof *p);
}
