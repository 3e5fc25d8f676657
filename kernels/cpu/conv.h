/* conv.h — the CPU backend's image-side ops, with the contracts of the matching ops.h
 * entries: 2-D convolution and its fused forms (conv.c), GroupNorm optionally fused with
 * swish (norm.c), nearest ×2 upsampling (elementwise.c), to_rgb8 and clip_prep (image.c).
 * Feature maps are NHWC fp32.
 */
#ifndef DALLE_KERNELS_CPU_CONV_H
#define DALLE_KERNELS_CPU_CONV_H

#include "kernels/ops.h"

void dalle_cpu_conv2d(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                      const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k);

void dalle_cpu_group_norm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                          const dalle_tensor *beta, int B, int HW, int C, int groups, float eps,
                          int swish);

void dalle_cpu_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C);

/* ops.h conv2d_up2x: conv2d reading the upsampled map's taps from x by index (the same
 * values as upsample2x then conv2d). */
void dalle_cpu_conv2d_up2x(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                           const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k);

/* ops.h conv2d_gn: group_norm into the backend's map buffer, then conv2d (the same values). */
void dalle_cpu_conv2d_gn(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                         const dalle_tensor *beta, int groups, float eps, int swish,
                         const dalle_tensor *w, const dalle_tensor *bias, int B, int H, int W,
                         int Cin, int Cout, int k);

/* Whether conv weight w ([Cout, k, k, Cin]) runs as Winograd F(2×2, 3×3) (conv.c), and its
 * layout there: 16 F32 matrices U_ξ [Cout, Cin], each packed as a GEMM weight. */
int dalle_cpu_conv_winograd(const dalle_tensor *w);
size_t dalle_cpu_winograd_pack_bytes(const dalle_tensor *w);
void dalle_cpu_winograd_pack(void *dst, const void *src, const dalle_tensor *w);

/* ops.h clip_prep (kernels/cpu/image.c). */
void dalle_cpu_clip_prep(dalle_backend *be, float *pixels, const uint8_t *rgb,
                         const dalle_clip_prep_plan *plan, int B);

/* ops.h to_rgb8 (model/vqgan.c dalle_vqgan_to_u8). */
void dalle_cpu_to_rgb8(dalle_backend *be, uint8_t *y, const float *x, int64_t n,
                       int32_t *nonfinite);

#endif /* DALLE_KERNELS_CPU_CONV_H */
