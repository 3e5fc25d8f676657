/* cuda_fp16.h (emulated device) — __half as its 16 bits, with the conversions our kernels
 * use: float → half rounded to nearest even (NaN → 0x7fff), half → float exact. */
#ifndef DALLE_EMU_CUDA_FP16_H
#define DALLE_EMU_CUDA_FP16_H

#include "kernels/cuda/emu/emu.h"

struct __half {
    unsigned short x;
};

__half __float2half_rn(float f);
float __half2float(__half h);
inline __half __float2half(float f) {
    return __float2half_rn(f);
}

#endif /* DALLE_EMU_CUDA_FP16_H */
