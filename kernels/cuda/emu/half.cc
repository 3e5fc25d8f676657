/* half.cc — __half and __nv_bfloat16 conversions of the emulated device (include/cuda_fp16.h,
 * include/cuda_bf16.h): float → 16 bits rounded to nearest even, NaN → 0x7fff (as CUDA's
 * __float2half_rn / __float2bfloat16_rn), overflow → ±inf; 16 bits → float exact. */
#include "cuda_bf16.h"
#include "cuda_fp16.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

__half __float2half_rn(float f) {
    const uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    unsigned short h;
    if (a > 0x7f800000u)
        h = 0x7fff; /* NaN */
    else if (a >= 0x477ff000u)
        h = (unsigned short)(sign | 0x7c00u); /* ≥ 65520: ±inf */
    else if (a < 0x38800000u) /* below 2^-14: a subnormal step of 2^-24, exact scaling */
        h = (unsigned short)(sign | (uint32_t)nearbyintf(f32_of(a) * 16777216.0f));
    else {
        uint32_t m = ((a >> 23) - 112) << 10 | (a & 0x7fffffu) >> 13; /* rebias 127 → 15 */
        const uint32_t rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (m & 1u)))
            m++;
        h = (unsigned short)(sign | m);
    }
    return __half{h};
}

float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu,
                   m = h.x & 0x3ffu;
    if (e == 0) { /* zero or subnormal: m · 2^-24 */
        const float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31)
        return f32_of(sign | 0x7f800000u | m << 13);
    return f32_of(sign | (e + 112) << 23 | m << 13);
}

__nv_bfloat16 __float2bfloat16_rn(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return __nv_bfloat16{0x7fff};
    return __nv_bfloat16{(unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

float __bfloat162float(__nv_bfloat16 h) {
    return f32_of((uint32_t)h.x << 16);
}
