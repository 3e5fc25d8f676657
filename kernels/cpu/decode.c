/* decode.c — the decode step's attention with device-resident indices on the CPU (ops.h
 * decode_attention, cross_attention; host memory is backend memory here): the cache append
 * and the attention op of attention.c, so the results are bit-identical to calling those.
 * The twin of kernels/cuda/decode.cu.
 */
#include <string.h>

#include "kernels/cpu/cpu.h"

void dalle_cpu_kv_store(dalle_backend *be, float *cache, const float *src, const int32_t *slot,
                        const int32_t *pos, int B, int T, int C, int cap) {
    (void)be;
    DALLE_ASSERT(B >= 0 && T >= 0 && C >= 1 && cap >= 1);
    for (int b = 0; b < B; b++) {
        DALLE_ASSERT(slot[b] >= 0 && pos[b] >= 0 && pos[b] + T <= cap);
        float *dst = cache + ((size_t)slot[b] * cap + (size_t)pos[b]) * C; // [T, C] in [cap, C]
        memcpy(dst, src + (size_t)b * T * C, (size_t)T * C * sizeof(float));
    }
}

/* Decode self-attention with the cache append (ops.h decode_attention): the cache append
 * (dalle_cpu_kv_store) and the attention op (attention.c) in sequence, so the result is
 * bit-identical to calling them. The CPU cache is fp32 (kv_dtype DALLE_F32). */
void dalle_cpu_decode_attention(dalle_backend *be, float *out, const float *q, const float *k,
                                const float *v, void *kc, void *vc, const int32_t *slot,
                                const int32_t *pos, int B, int cap, int H, int D) {
    DALLE_ASSERT(B >= 0 && cap >= 1 && H >= 1 && D >= 1);
    for (int b = 0; b < B; b++)
        DALLE_ASSERT(slot[b] >= 0 && pos[b] >= 0 && pos[b] < cap);
    dalle_cpu_kv_store(be, (float *)kc, k, slot, pos, B, 1, H * D, cap);
    dalle_cpu_kv_store(be, (float *)vc, v, slot, pos, B, 1, H * D, cap);
    dalle_cpu_attention(be, out, q, (const float *)kc, (const float *)vc, slot, NULL, pos, B, 1,
                        cap, cap, H, D);
}

/* Cross-attention, one query per row (ops.h cross_attention): the attention op (attention.c). */
void dalle_cpu_cross_attention(dalle_backend *be, float *out, const float *q, const float *k,
                               const float *v, const int32_t *block, const uint8_t *key_mask, int B,
                               int T, int H, int D) {
    dalle_cpu_attention(be, out, q, k, v, block, key_mask, NULL, B, 1, T, T, H, D);
}
