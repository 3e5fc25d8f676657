/* cuda_bf16.h (emulated device) — __nv_bfloat16 as its 16 bits: float → bf16 rounded to
 * nearest even (NaN → 0x7fff), bf16 → float exact. */
#ifndef DALLE_EMU_CUDA_BF16_H
#define DALLE_EMU_CUDA_BF16_H

#include "kernels/cuda/emu/emu.h"

struct __nv_bfloat16 {
    unsigned short x;
};

__nv_bfloat16 __float2bfloat16_rn(float f);
float __bfloat162float(__nv_bfloat16 h);
inline __nv_bfloat16 __float2bfloat16(float f) {
    return __float2bfloat16_rn(f);
}

#endif /* DALLE_EMU_CUDA_BF16_H */
