/* attention.c — CPU multi-head attention (see ops.h for the masks and the block mapping).
 * One (batch row, query, head) per OpenMP iteration: scores of the visible keys into a
 * per-thread slice of the backend scratch, softmax with the maximum subtracted, then the
 * probability-weighted sum of the value rows. fp32 throughout.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

/* out[D] = Σ_j softmax(s)_j · v[j·C, :D] over the keys j < n visible to this query.
 * q: [D]; k, v: [n, C] rows (already offset to the head); s: [n] scratch. */
static void attend_one(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, const uint8_t *mask, int n, int C, int D,
                       float scale, float *restrict s) {
    float mx = -INFINITY;
    int seen = 0;
    for (int j = 0; j < n; j++) {
        if (mask && !mask[j])
            continue;
        const float *restrict kj = k + (size_t)j * C;
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int d = 0; d < D; d++)
            dot += q[d] * kj[d];
        s[j] = dot * scale;
        if (s[j] > mx)
            mx = s[j];
        seen++;
    }
    DALLE_ASSERT(seen > 0); /* every query must see a key */
    memset(out, 0, (size_t)D * sizeof *out);
    float sum = 0;
    for (int j = 0; j < n; j++) {
        if (mask && !mask[j])
            continue;
        const float p = expf(s[j] - mx);
        const float *restrict vj = v + (size_t)j * C;
        sum += p;
#pragma omp simd
        for (int d = 0; d < D; d++)
            out[d] += p * vj[d];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int d = 0; d < D; d++)
        out[d] *= inv;
}

void dalle_cpu_attention(dalle_backend *be, float *out, const float *q, const float *k,
                         const float *v, const int32_t *kv_index, const uint8_t *key_mask,
                         const int32_t *causal_pos, int B, int Tq, int Tk, int kv_cap, int H,
                         int D) {
    DALLE_ASSERT(B >= 0 && Tq >= 1 && Tk >= 1 && Tk <= kv_cap && H >= 1 && D >= 1);
    const int C = H * D, threads = dalle_cpu_of(be)->threads;
    const float scale = 1.0f / sqrtf((float)D);
    float *scratch = dalle_cpu_scratch(be, (size_t)threads * Tk * sizeof(float));
    if (!scratch)
        return; // be->failed is set
    const int64_t work = (int64_t)B * Tq * Tk * C;
#pragma omp parallel for collapse(3) num_threads(threads) if (work >= DALLE_CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq; i++)
            for (int h = 0; h < H; h++) {
                const int blk = kv_index ? kv_index[b] : b;
                DALLE_ASSERT(blk >= 0);
                int n = Tk; /* keys j < n pass the causal test */
                if (causal_pos && causal_pos[b] + i + 1 < n)
                    n = causal_pos[b] + i + 1;
                if (n < 0)
                    n = 0;
                const size_t row = ((size_t)b * Tq + i) * C + (size_t)h * D; // [B, Tq, C]
                const size_t kv = (size_t)blk * kv_cap * C + (size_t)h * D;  // [blk, kv_cap, C]
                attend_one(out + row, q + row, k + kv, v + kv,
                           key_mask ? key_mask + (size_t)blk * kv_cap : NULL, n, C, D, scale,
                           scratch + (size_t)omp_get_thread_num() * Tk);
            }
}
