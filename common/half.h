/* half.h — exact widening of the 16-bit float formats the weights come in: IEEE binary16
 * (F16: subnormals, ±inf and NaN kept) and bfloat16 (the top half of a binary32). Every
 * value of either format is exactly representable in fp32.
 */
#ifndef DALLE_COMMON_HALF_H
#define DALLE_COMMON_HALF_H

#include <stdint.h>
#include <string.h>

static inline float dalle_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) { /* zero or subnormal: m · 2^-24 */
        const float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    const uint32_t bits = sign | (e == 0x1f ? 0xffu : e + 127 - 15) << 23 | m << 13;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static inline float dalle_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

#endif /* DALLE_COMMON_HALF_H */
