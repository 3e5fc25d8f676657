/* attention.cu — multi-head attention for every shape the models use (ops.h): encoder and
 * prefill (Tq = 64, text key mask), decode self-attention (Tq = 1, causal over each image's
 * KV cache block, kv_index mapping rows to blocks) and cross-attention (kv_index → the
 * prompt's block, its text mask).
 *
 * One block per (row b, query i, head h), 128 threads, each running dalle_attend_query
 * (internal.cuh: scores in shared memory, block max and normaliser in fp32 with expf, then
 * each thread's output channels summed over the keys in order). Visibility is checked on
 * the host first (every query must see a key), as the CPU backend asserts. The decode step
 * does not come here: its attention is decode.cu's (split keys, 16-bit KV cache).
 */
#include <math.h>

#include "kernels/cuda/internal.cuh"

#define ATT_THREADS 128

__global__ void attention_kernel(float *out, const float *q, const float *k, const float *v,
                                 const int32_t *kv_index, const uint8_t *key_mask,
                                 const int32_t *causal_pos, int Tq, int Tk, int kv_cap, int H,
                                 int D, float scale) {
    DALLE_SHARED_DYN(float, s); /* [Tk] scores, then [32] reduction space */
    float *red = s + Tk;
    const int h = blockIdx.x % H, i = (blockIdx.x / H) % Tq, b = blockIdx.x / (H * Tq);
    const int C = H * D;
    const int blk = kv_index ? kv_index[b] : b;
    int n = Tk;
    if (causal_pos && causal_pos[b] + i + 1 < n)
        n = causal_pos[b] + i + 1;
    const uint8_t *mask = key_mask ? key_mask + (size_t)blk * kv_cap : NULL;
    const size_t row = ((size_t)b * Tq + i) * C + (size_t)h * D; // [B, Tq, C]
    const size_t kv = (size_t)blk * kv_cap * C + (size_t)h * D;  // [kv_cap, C] at head h
    dalle_attend_query(out + row, q + row, k + kv, v + kv, mask, n, C, D, scale, s, red);
}

extern "C" void dalle_cuda_attention(dalle_backend *be, float *out, const float *q, const float *k,
                                     const float *v, const int32_t *kv_index,
                                     const uint8_t *key_mask, const int32_t *causal_pos, int B,
                                     int Tq, int Tk, int kv_cap, int H, int D) {
    DALLE_ASSERT(B >= 0 && Tq >= 1 && Tk >= 1 && Tk <= kv_cap && H >= 1 && D >= 1);
    if (B == 0)
        return;
    int nblk = B;
    if (kv_index) {
        nblk = 0;
        for (int b = 0; b < B; b++) {
            DALLE_ASSERT(kv_index[b] >= 0);
            if (kv_index[b] + 1 > nblk)
                nblk = kv_index[b] + 1;
        }
    }
    /* every query must see at least one key (a broken invariant otherwise, as on the CPU) */
    for (int b = 0; b < B; b++) {
        const int blk = kv_index ? kv_index[b] : b;
        int first = 0; /* first key that the mask lets through */
        if (key_mask)
            while (first < Tk && !key_mask[(size_t)blk * kv_cap + first])
                first++;
        const int n_min = causal_pos ? (causal_pos[b] + 1 < Tk ? causal_pos[b] + 1 : Tk) : Tk;
        DALLE_ASSERT(first < n_min); /* the query i = 0 sees the fewest keys */
    }
    const void *src[3] = {kv_index, key_mask, causal_pos};
    const size_t bytes[3] = {kv_index ? (size_t)B * 4 : 0, key_mask ? (size_t)nblk * kv_cap : 0,
                             causal_pos ? (size_t)B * 4 : 0};
    void *dev[3];
    dalle_cuda_stage(be, 3, src, bytes, dev, "attention");
    const size_t shm = ((size_t)Tk + 32) * sizeof(float);
    DALLE_ASSERT(shm <= 48 * 1024);
    const float scale = 1.0f / sqrtf((float)D);
    DALLE_LAUNCH(attention_kernel, (unsigned)((int64_t)B * Tq * H), ATT_THREADS, shm,
                 dalle_cuda_of(be)->stream)
    (out, q, k, v, (const int32_t *)dev[0], (const uint8_t *)dev[1], (const int32_t *)dev[2], Tq,
     Tk, kv_cap, H, D, scale);
    CUDA_LAUNCHED("attention");
}
