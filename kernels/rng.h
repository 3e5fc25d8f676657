/* rng.h — the counter-based RNG every backend samples with: Philox4x32-10 keyed by the
 * 64-bit seed, counter (image, step, 0, 0). The same (seed, image, step) gives the same
 * uniform on the CPU and on the GPU, whatever else shares the batch.
 * Header-only so that CUDA kernels include the very same code.
 */
#ifndef DALLE_KERNELS_RNG_H
#define DALLE_KERNELS_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define DALLE_HD __host__ __device__
#else
#define DALLE_HD
#endif

static inline DALLE_HD uint32_t dalle_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32 with 10 rounds (Salmon et al., SC'11); out receives 4 words. */
static inline DALLE_HD void dalle_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2],
                                                uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = dalle_mulhilo32(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = dalle_mulhilo32(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Uniform in [0, 1) with 24 bits, from word 0 of Philox(seed; image, step). */
static inline DALLE_HD float dalle_rng_uniform(uint64_t seed, uint32_t image, uint32_t step) {
    uint32_t ctr[4] = {image, step, 0u, 0u};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    dalle_philox4x32_10(ctr, key, out);
    return (float)(out[0] >> 8) * (1.0f / 16777216.0f);
}

#endif /* DALLE_KERNELS_RNG_H */
