/* decode.cu — the decode step's attention with device-resident indices (ops.h
 * decode_attention, cross_attention). Neither reads host memory nor synchronises, so a
 * step built from them can be recorded in a CUDA graph (backend.cu graph_*).
 *
 * decode_attention = append + flash-decoding:
 *  1. kv_append_kernel: kc[slot[b], pos[b], :] = k[b, :] (and v), rounded to the cache
 *     type T ∈ {float, __half, __nv_bfloat16} — the self-attention KV cache in 16 bits
 *     halves the dominant memory traffic of large batches (docs/performance-model.md §3);
 *  2. split_kernel, grid (B·H, nsplit): the cap positions are cut into nsplit chunks of
 *     `chunk` keys (a multiple of 32); block (row·head, s) takes keys [s·chunk,
 *     min((s+1)·chunk, pos[b]+1)) — each row's own length, read on the device — and
 *     writes a partial softmax (m = max score, l = Σ e^(s−m), acc[d] = Σ e^(s−m)·v[d]);
 *     chunks past the row's length write (−∞, 0, 0) and leave at once;
 *  3. combine_kernel, grid B·H: out = Σ_s e^(m_s−M)·acc_s / Σ_s e^(m_s−M)·l_s.
 * nsplit is chosen at launch from B·H so that at least 2 blocks per SM are in flight
 * (batch 1 = 2 rows × 16 heads = 32 blocks would leave 100 of 132 SMs idle), and at most
 * cap/32 chunks. Scores and sums are fp32 (expf); scores are q·k·(1/√D) in the CPU's
 * order within a key (lanes, then the warp reduction), so fp32 caches agree with the CPU
 * to ~1e-6.
 * Partials live in device scratch 2: [B·H, nsplit, D + 2] floats.
 *
 * cross_attention: one block per (row, head), 128 threads, dalle_attend_query (internal.cuh)
 * like attention.cu's kernel but block and mask read from device memory; a row with no
 * visible key writes zeros.
 */
#include <math.h>

#include "kernels/cuda/internal.cuh"

#define DEC_THREADS   128
#define DEC_CHUNK_MIN 32

template <typename T> __device__ __forceinline__ float kv_ld(const T *p, size_t i);
template <> __device__ __forceinline__ float kv_ld<float>(const float *p, size_t i) {
    return p[i];
}
template <> __device__ __forceinline__ float kv_ld<__half>(const __half *p, size_t i) {
    return __half2float(p[i]);
}
template <>
__device__ __forceinline__ float kv_ld<__nv_bfloat16>(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}
template <typename T> __device__ __forceinline__ T kv_cvt(float x);
template <> __device__ __forceinline__ float kv_cvt<float>(float x) {
    return x;
}
template <> __device__ __forceinline__ __half kv_cvt<__half>(float x) {
    return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 kv_cvt<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* kc/vc[slot[b], pos[b], :] = k/v[b, :] (rounded to T); B·C items */
template <typename T>
__global__ void kv_append_kernel(T *kc, T *vc, const float *k, const float *v, const int32_t *slot,
                                 const int32_t *pos, int B, int C, int cap) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (int64_t)B * C;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = i / C, c = i % C;
        const size_t o = ((size_t)slot[b] * cap + pos[b]) * C + c; // [slots, cap, C]
        kc[o] = kv_cvt<T>(k[i]);
        vc[o] = kv_cvt<T>(v[i]);
    }
}

/* One partial softmax per (row·head, chunk); part: [B·H, nsplit, D + 2] = (m, l, acc[D]). */
template <typename T>
__global__ void split_kernel(float *part, const float *q, const T *kc, const T *vc,
                             const int32_t *slot, const int32_t *pos, int H, int D, int cap,
                             int chunk, float scale) {
    DALLE_SHARED_DYN(float, sh); /* q [D], scores [chunk], reduction [32] */
    float *qs = sh, *s = sh + D, *red = s + chunk;
    const int bh = blockIdx.x, b = bh / H, h = bh % H, sp = blockIdx.y, nsplit = gridDim.y;
    const int C = H * D;
    const int n = pos[b] + 1; /* this row's keys */
    const int j0 = sp * chunk, j1 = min(j0 + chunk, n);
    float *pm = part + ((size_t)bh * nsplit + sp) * (D + 2);
    if (j0 >= j1) { /* past this row's length */
        for (int d = threadIdx.x; d < D; d += blockDim.x)
            pm[2 + d] = 0.0f;
        if (threadIdx.x == 0)
            pm[0] = -INFINITY, pm[1] = 0.0f;
        return;
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x)
        qs[d] = q[(size_t)b * C + (size_t)h * D + d];
    __syncthreads();
    const size_t base = (size_t)slot[b] * cap * C + (size_t)h * D; // [slots, cap, C] → head h
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int j = j0 + warp; j < j1; j += nw) {
        const size_t kj = base + (size_t)j * C;
        float dot = 0;
        for (int d = lane; d < D; d += 32)
            dot += qs[d] * kv_ld<T>(kc, kj + d);
        dot = dalle_warp_sum(dot);
        if (lane == 0)
            s[j - j0] = dot * scale;
    }
    __syncthreads();
    const int m = j1 - j0;
    float mx;
    const float z = dalle_block_exp(s, m, red, &mx); /* every key here is visible */
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0;
        for (int j = 0; j < m; j++)
            acc += s[j] * kv_ld<T>(vc, base + (size_t)(j0 + j) * C + d);
        pm[2 + d] = acc;
    }
    if (threadIdx.x == 0)
        pm[0] = mx, pm[1] = z;
}

/* out[b, h·D + d] from the nsplit partials of (b, h) */
__global__ void combine_kernel(float *out, const float *part, int H, int D, int nsplit) {
    const int bh = blockIdx.x;
    const float *p0 = part + (size_t)bh * nsplit * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++)
        M = fmaxf(M, p0[(size_t)s * (D + 2)]);
    float L = 0;
    for (int s = 0; s < nsplit; s++) {
        const float ms = p0[(size_t)s * (D + 2)];
        if (ms != -INFINITY)
            L += p0[(size_t)s * (D + 2) + 1] * expf(ms - M);
    }
    const float inv = L > 0 ? 1.0f / L : 0.0f;
    float *o = out + (size_t)bh * D; /* [B, H·D]: row b, head h at b·C + h·D = bh·D */
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0;
        for (int s = 0; s < nsplit; s++) {
            const float ms = p0[(size_t)s * (D + 2)];
            if (ms != -INFINITY)
                acc += p0[(size_t)s * (D + 2) + 2 + d] * expf(ms - M);
        }
        o[d] = acc * inv;
    }
}

template <typename T>
static void decode_attention_t(dalle_backend *be, float *out, const float *q, const float *k,
                               const float *v, void *kc, void *vc, const int32_t *slot,
                               const int32_t *pos, int B, int cap, int H, int D) {
    dalle_cuda *cu = dalle_cuda_of(be);
    const int C = H * D;
    const int64_t n = (int64_t)B * C;
    DALLE_LAUNCH(kv_append_kernel<T>, dalle_cuda_blocks(n, 256), 256, 0, cu->stream)
    ((T *)kc, (T *)vc, k, v, slot, pos, B, C, cap);
    CUDA_LAUNCHED("decode_attention");
    /* splits: enough blocks for 2 per SM, chunks of a multiple of 32 keys */
    const int rows_heads = B * H, max_split = (cap + DEC_CHUNK_MIN - 1) / DEC_CHUNK_MIN;
    const int want = 2 * (cu->sms > 0 ? cu->sms : 132);
    int nsplit = (want + rows_heads - 1) / rows_heads;
    if (nsplit > max_split)
        nsplit = max_split;
    if (nsplit < 1)
        nsplit = 1;
    int chunk = (cap + nsplit - 1) / nsplit;
    chunk = (chunk + DEC_CHUNK_MIN - 1) / DEC_CHUNK_MIN * DEC_CHUNK_MIN;
    nsplit = (cap + chunk - 1) / chunk;
    float *part = (float *)dalle_cuda_scratch(
        be, 2, (size_t)rows_heads * nsplit * (D + 2) * sizeof(float), "decode_attention");
    const size_t shm = ((size_t)D + chunk + 32) * sizeof(float);
    DALLE_ASSERT(shm <= 48 * 1024);
    const dim3 grid((unsigned)rows_heads, (unsigned)nsplit);
    DALLE_LAUNCH(split_kernel<T>, grid, DEC_THREADS, shm, cu->stream)
    (part, q, (const T *)kc, (const T *)vc, slot, pos, H, D, cap, chunk, 1.0f / sqrtf((float)D));
    CUDA_LAUNCHED("decode_attention");
    DALLE_LAUNCH(combine_kernel, (unsigned)rows_heads, D <= 64 ? 64 : DEC_THREADS, 0, cu->stream)
    (out, part, H, D, nsplit);
    CUDA_LAUNCHED("decode_attention");
}

extern "C" void dalle_cuda_decode_attention(dalle_backend *be, float *out, const float *q,
                                            const float *k, const float *v, void *kc, void *vc,
                                            const int32_t *slot, const int32_t *pos, int B, int cap,
                                            int H, int D) {
    DALLE_ASSERT(B >= 0 && cap >= 1 && H >= 1 && D >= 1);
    if (B == 0)
        return;
    switch (dalle_cuda_of(be)->ops.kv_dtype) {
    case DALLE_F32:
        decode_attention_t<float>(be, out, q, k, v, kc, vc, slot, pos, B, cap, H, D);
        break;
    case DALLE_F16:
        decode_attention_t<__half>(be, out, q, k, v, kc, vc, slot, pos, B, cap, H, D);
        break;
    case DALLE_BF16:
        decode_attention_t<__nv_bfloat16>(be, out, q, k, v, kc, vc, slot, pos, B, cap, H, D);
        break;
    }
}

__global__ void cross_kernel(float *out, const float *q, const float *k, const float *v,
                             const int32_t *block, const uint8_t *key_mask, int T, int H, int D,
                             float scale) {
    DALLE_SHARED_DYN(float, s); /* [T] scores, then [32] reduction space */
    float *red = s + T;
    const int h = blockIdx.x % H, b = blockIdx.x / H;
    const int C = H * D, blk = block[b];
    const uint8_t *mask = key_mask + (size_t)blk * T;
    const size_t kv = (size_t)blk * T * C + (size_t)h * D; // [blocks, T, C] → head h
    dalle_attend_query(out + (size_t)b * C + (size_t)h * D, q + (size_t)b * C + (size_t)h * D,
                       k + kv, v + kv, mask, T, C, D, scale, s, red);
}

extern "C" void dalle_cuda_cross_attention(dalle_backend *be, float *out, const float *q,
                                           const float *k, const float *v, const int32_t *block,
                                           const uint8_t *key_mask, int B, int T, int H, int D) {
    DALLE_ASSERT(B >= 0 && T >= 1 && H >= 1 && D >= 1 && key_mask);
    if (B == 0)
        return;
    const size_t shm = ((size_t)T + 32) * sizeof(float);
    DALLE_ASSERT(shm <= 48 * 1024);
    DALLE_LAUNCH(cross_kernel, (unsigned)((int64_t)B * H), DEC_THREADS, shm,
                 dalle_cuda_of(be)->stream)
    (out, q, k, v, block, key_mask, T, H, D, 1.0f / sqrtf((float)D));
    CUDA_LAUNCHED("cross_attention");
}
