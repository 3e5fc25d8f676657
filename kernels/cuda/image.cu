/* image.cu — pixels on the device.
 *
 * rgb8 (ops.h to_rgb8): y[i] = (uint8)(clamp(x[i], 0, 1) · 255), NaN → 0 — the CPU's
 * dalle_vqgan_to_u8 in model/vqgan.c, bit for bit (one fp32 multiply, truncation); a NaN or
 * ±inf anywhere sets the caller's nonfinite flag.
 *
 * CLIP preprocessing by a plan (ops.h clip_prep): Pillow's 8-bit
 * bicubic resize as separable Q22 fixed-point passes, the centre crop and CLIP's
 * normalisation — integer arithmetic for the resize (exact whatever the order), then
 * float(u · (1/255) in double) and (v − mean) / std with IEEE-rounded fp32 division, so
 * the pixels equal model/image_prep.c's bit for bit.
 * When both axes are resampled, pass1_kernel writes the intermediate uint8 image of every
 * image (scratch 0: [B, in_h, out_w, 3] horizontal first, [B, out_h, in_w, 3] vertical
 * first); out_kernel evaluates the second pass only at the S×S cropped outputs, one thread
 * per output value. The plan's coefficient arrays are device memory.
 */
#include "kernels/cuda/internal.cuh"

#define IMG_THREADS 256

__device__ __forceinline__ uint8_t img_resample(const uint8_t *s, size_t step, const int32_t *first,
                                                const int32_t *count, const int32_t *coef, int taps,
                                                int i) {
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

/* tmp [B, th, tw, 3] = the first pass */
__global__ void pass1_kernel(uint8_t *tmp, const uint8_t *rgb, dalle_clip_prep_plan pl, int B,
                             int th, int tw) {
    const int64_t n = (int64_t)B * th * tw * 3;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % 3), x = (int)((e / 3) % tw), y = (int)((e / (3 * tw)) % th);
        const int64_t b = e / ((int64_t)3 * tw * th);
        const uint8_t *src = rgb + (size_t)b * pl.in_h * pl.in_w * 3; // [in_h, in_w, 3]
        tmp[e] = pl.vertical_first ? img_resample(src + (size_t)x * 3 + c, (size_t)pl.in_w * 3,
                                                  pl.first_y, pl.count_y, pl.coef_y, pl.taps_y, y)
                                   : img_resample(src + (size_t)y * pl.in_w * 3 + c, 3, pl.first_x,
                                                  pl.count_x, pl.coef_x, pl.taps_x, x);
    }
}

__global__ void out_kernel(float *pixels, const uint8_t *rgb, const uint8_t *tmp,
                           dalle_clip_prep_plan pl, int B, int th, int tw) {
    const int S = pl.size;
    const int both = pl.horizontal && pl.vertical;
    const int64_t n = (int64_t)B * S * S * 3;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % 3), x = (int)((e / 3) % S), y = (int)((e / (3 * S)) % S);
        const int64_t b = e / ((int64_t)3 * S * S);
        const int ry = pl.top + y, rx = pl.left + x;
        const uint8_t *src = rgb + (size_t)b * pl.in_h * pl.in_w * 3;
        const uint8_t *t = both ? tmp + (size_t)b * th * tw * 3 : NULL;
        uint8_t u;
        if (both && pl.vertical_first)
            u = img_resample(t + (size_t)ry * tw * 3 + c, 3, pl.first_x, pl.count_x, pl.coef_x,
                             pl.taps_x, rx);
        else if (both)
            u = img_resample(t + (size_t)rx * 3 + c, (size_t)tw * 3, pl.first_y, pl.count_y,
                             pl.coef_y, pl.taps_y, ry);
        else if (pl.horizontal)
            u = img_resample(src + (size_t)ry * pl.in_w * 3 + c, 3, pl.first_x, pl.count_x,
                             pl.coef_x, pl.taps_x, rx);
        else if (pl.vertical)
            u = img_resample(src + (size_t)rx * 3 + c, (size_t)pl.in_w * 3, pl.first_y, pl.count_y,
                             pl.coef_y, pl.taps_y, ry);
        else
            u = src[((size_t)ry * pl.in_w + rx) * 3 + c];
        const float v = __double2float_rn(__dmul_rn((double)u, 1.0 / 255.0));
        pixels[e] = __fdiv_rn(__fsub_rn(v, pl.mean[c]), pl.std[c]);
    }
}

extern "C" void dalle_cuda_clip_prep(dalle_backend *be, float *pixels, const uint8_t *rgb,
                                     const dalle_clip_prep_plan *pl, int B) {
    DALLE_ASSERT(B >= 0 && pl->size >= 1);
    DALLE_ASSERT(pl->top >= 0 && pl->left >= 0 && pl->top + pl->size <= pl->out_h &&
                 pl->left + pl->size <= pl->out_w);
    if (B == 0)
        return;
    cudaStream_t st = dalle_cuda_of(be)->stream;
    const int both = pl->horizontal && pl->vertical;
    const int tw = pl->vertical_first ? pl->in_w : pl->out_w;
    const int th = pl->vertical_first ? pl->out_h : pl->in_h;
    uint8_t *tmp = NULL;
    if (both) {
        const int64_t n = (int64_t)B * th * tw * 3;
        tmp = (uint8_t *)dalle_cuda_scratch(be, 0, (size_t)n, "clip_prep");
        DALLE_LAUNCH(pass1_kernel, dalle_cuda_blocks(n, IMG_THREADS), IMG_THREADS, 0, st)
        (tmp, rgb, *pl, B, th, tw);
        CUDA_LAUNCHED("clip_prep");
    }
    const int64_t n = (int64_t)B * pl->size * pl->size * 3;
    DALLE_LAUNCH(out_kernel, dalle_cuda_blocks(n, IMG_THREADS), IMG_THREADS, 0, st)
    (pixels, rgb, tmp, *pl, B, th, tw);
    CUDA_LAUNCHED("clip_prep");
}

/* nonfinite: every thread that meets a NaN or ±inf stores 1 (same value: no race matters) */
__global__ void rgb8_kernel(uint8_t *y, const float *x, int64_t n, int32_t *nonfinite) {
    int bad = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float xi = x[i];
        const float v = xi > 0 ? (xi < 1 ? xi : 1.0f) : 0.0f; /* NaN → 0 */
        y[i] = (uint8_t)__fmul_rn(v, 255.0f);
        bad |= !isfinite(xi);
    }
    if (bad && nonfinite)
        *nonfinite = 1;
}

extern "C" void dalle_cuda_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                                   int32_t *nonfinite) {
    DALLE_ASSERT(n >= 0);
    if (n == 0)
        return;
    DALLE_LAUNCH(rgb8_kernel, dalle_cuda_blocks(n, 256), 256, 0, dalle_cuda_of(be)->stream)
    (y, x, n, nonfinite);
    CUDA_LAUNCHED("to_rgb8");
}
