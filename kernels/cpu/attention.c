/* attention.c — CPU multi-head attention (see ops.h for the masks and the block mapping).
 * One (batch row, query) per item (dalle_cpu_for), every head at once: the key rows and then the
 * value rows [C] are read in position order, each a whole contiguous row, so a cache of
 * [blk, kv_cap, C] streams from memory once per query instead of once per head with a C-float
 * stride. Per head: scores of the visible keys into a per-thread slice of the backend
 * scratch, softmax with the maximum subtracted, then the probability-weighted sum of the
 * value rows — the same operations in the same order as one head alone. fp32 throughout.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

/* q · k over one head's D lanes: the one dot product of every score. */
static inline float head_dot(const float *restrict q, const float *restrict k, int D) {
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < D; d++)
        dot += q[d] * k[d];
    return dot;
}

/* out[C] = for each head h, Σ_j softmax(s_h)_j · v[j, h·D : (h+1)·D] over the keys j < n
 * visible to this query. q: [C]; k, v: [n, C]; s: [H, n] scores, mx and sum: [H] scratch. */
static void attend_row(float *restrict out, const float *restrict q, const float *restrict k,
                       const float *restrict v, const uint8_t *mask, int n, int H, int D,
                       float scale, float *restrict s, float *restrict mx, float *restrict sum) {
    const int C = H * D;
    for (int h = 0; h < H; h++)
        mx[h] = -INFINITY, sum[h] = 0;
    int seen = 0;
    for (int j = 0; j < n; j++) {
        if (mask && !mask[j])
            continue;
        const float *restrict kj = k + (size_t)j * C;
        for (int h = 0; h < H; h++) {
            const float x = head_dot(q + (size_t)h * D, kj + (size_t)h * D, D) * scale;
            s[(size_t)h * n + j] = x;
            if (x > mx[h])
                mx[h] = x;
        }
        seen++;
    }
    DALLE_ASSERT(seen > 0); /* every query must see a key */
    memset(out, 0, (size_t)C * sizeof *out);
    for (int j = 0; j < n; j++) {
        if (mask && !mask[j])
            continue;
        const float *restrict vj = v + (size_t)j * C;
        for (int h = 0; h < H; h++) {
            const float p = expf(s[(size_t)h * n + j] - mx[h]);
            float *restrict oh = out + (size_t)h * D;
            const float *restrict vh = vj + (size_t)h * D;
            sum[h] += p;
#pragma omp simd
            for (int d = 0; d < D; d++)
                oh[d] += p * vh[d];
        }
    }
    for (int h = 0; h < H; h++) {
        const float inv = 1.0f / sum[h];
        float *restrict oh = out + (size_t)h * D;
#pragma omp simd
        for (int d = 0; d < D; d++)
            oh[d] *= inv;
    }
}

/* The attention op's arguments; an item is one (batch row, query). */
typedef struct {
    float *out, *scratch;
    const float *q, *k, *v;
    const int32_t *kv_index, *causal_pos;
    const uint8_t *key_mask;
    int Tq, Tk, kv_cap, H, D;
    size_t per_thread;
    float scale;
} attention_args;

static void attention_item(void *ctx, int64_t item, int thread) {
    const attention_args *a = ctx;
    const int b = (int)(item / a->Tq), i = (int)(item % a->Tq), C = a->H * a->D;
    const int blk = a->kv_index ? a->kv_index[b] : b;
    DALLE_ASSERT(blk >= 0);
    int n = a->Tk; /* keys j < n pass the causal test */
    if (a->causal_pos && a->causal_pos[b] + i + 1 < n)
        n = a->causal_pos[b] + i + 1;
    if (n < 0)
        n = 0;
    const size_t row = (size_t)item * C;                    // [B, Tq, C]
    const size_t kv = (size_t)blk * a->kv_cap * C;          // [blk, kv_cap, C]
    float *s = a->scratch + (size_t)thread * a->per_thread; // [H, Tk], mx [H], sum [H]
    attend_row(a->out + row, a->q + row, a->k + kv, a->v + kv,
               a->key_mask ? a->key_mask + (size_t)blk * a->kv_cap : NULL, n, a->H, a->D, a->scale,
               s, s + (size_t)a->H * a->Tk, s + (size_t)a->H * a->Tk + a->H);
}

void dalle_cpu_attention(dalle_backend *be, float *out, const float *q, const float *k,
                         const float *v, const int32_t *kv_index, const uint8_t *key_mask,
                         const int32_t *causal_pos, int B, int Tq, int Tk, int kv_cap, int H,
                         int D) {
    DALLE_ASSERT(B >= 0 && Tq >= 1 && Tk >= 1 && Tk <= kv_cap && H >= 1 && D >= 1);
    const int threads = dalle_cpu_of(be)->threads;
    attention_args a = {.out = out,
                        .q = q,
                        .k = k,
                        .v = v,
                        .kv_index = kv_index,
                        .causal_pos = causal_pos,
                        .key_mask = key_mask,
                        .Tq = Tq,
                        .Tk = Tk,
                        .kv_cap = kv_cap,
                        .H = H,
                        .D = D,
                        .per_thread = (size_t)H * Tk + 2 * (size_t)H,
                        .scale = 1.0f / sqrtf((float)D)};
    a.scratch = dalle_cpu_scratch(be, (size_t)threads * a.per_thread * sizeof(float));
    if (!a.scratch)
        return; // be->failed is set
    const int64_t work = (int64_t)B * Tq * Tk * H * D;
    dalle_cpu_for(be, (int64_t)B * Tq, work >= DALLE_CPU_PAR_MIN, attention_item, &a);
}
