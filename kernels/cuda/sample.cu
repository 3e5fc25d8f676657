/* sample.cu — guided sampling on the device, token for token the CPU backend's algorithm
 * (ops.h, kernels/cpu/sample.c). One block per image:
 *  1. guided logit l[j] = (l_u + s·(l_c − l_u)) / temperature, written with __fsub_rn /
 *     __fmul_rn / __fadd_rn / __fdiv_rn so that nvcc cannot contract it into an FMA — the
 *     CPU build (x86-64 without -mfma) rounds after every operation too;
 *  2. top-k by k rounds of a block-wide arg-max under the total order (value desc, index
 *     asc), each round taking the best candidate ranked after the previous one — exactly
 *     the CPU heap's order, ties included;
 *  3-5. one thread then runs the CPU's sequential fp32 code over the ≤ k sorted candidates:
 *     softmax normaliser, top-p prefix, total, Philox uniform (kernels/rng.h, the same
 *     code) and the inverse-CDF walk, in the same order with the same roundings.
 * The one remaining difference is exp: glibc's expf is not bit-specified and CUDA's expf
 * is 2 ulp; we use (float)exp((double)x), which is correctly rounded like glibc's expf in
 * all but a vanishing fraction of inputs (glibc documents ≤ 0.502 ulp). A differing
 * rounding changes a probability by 1 ulp, which changes the token only if u·total lands
 * within a few ulps of a cumulative boundary (≈1e-7 per step); tests/gpu counts mismatches.
 * NaN logits are outside the contract on both backends.
 * Steps 1-2 have two kernels: sample_fast_kernel (below; radix select + bitonic sort,
 * O(V + k log² k), the default for k ≤ 2048) and sample_kernel, whose k rounds cost
 * O(k·V/threads) (DALLE_CUDA_SAMPLER=rounds, and k > 2048). Both produce the same ordered
 * candidates and share the sequential tail (sample_finish).
 * sample_dev (ops.h) runs the same kernels and scatters the tokens into the next step's
 * device token rows and the device codes, with no copy back and no sync.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "kernels/cuda/internal.cuh"
#include "kernels/rng.h"

#define SAMPLE_THREADS 256

__device__ __forceinline__ float guided(const float *lc, const float *lu, int j, float s,
                                        float temp) {
    return __fdiv_rn(__fadd_rn(lu[j], __fmul_rn(s, __fsub_rn(lc[j], lu[j]))), temp);
}

/* a ranks before b in (value desc, index asc) order */
__device__ __forceinline__ bool before(float av, int ai, float bv, int bi) {
    return av > bv || (av == bv && ai < bi);
}

__device__ void sample_finish(int32_t *tokens, float *cv, const int32_t *ci, int k,
                              const dalle_sample_params &p, const int32_t *step, int b);

__global__ void sample_kernel(int32_t *tokens, const float *logits, int V, int ld,
                              const dalle_sample_params *params, const int32_t *step, float *cand_v,
                              int32_t *cand_i, int kmax) {
    __shared__ float wv[32];
    __shared__ int wi[32];
    const int b = blockIdx.x;
    const dalle_sample_params p = params[b];
    const float *lc = logits + (size_t)2 * b * ld; // [B, 2, ld]
    const float *lu = lc + ld;
    const int k = p.top_k < V ? p.top_k : V;
    float *cv = cand_v + (size_t)b * kmax;
    int32_t *ci = cand_i + (size_t)b * kmax;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

    float pv = INFINITY; /* previous pick; round 0 accepts everything */
    int pi = -1;
    for (int t = 0; t < k; t++) {
        float bv = -INFINITY;
        int bi = -1;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            const float l = guided(lc, lu, j, p.cond_scale, p.temperature);
            const bool after_prev = t == 0 || before(pv, pi, l, j);
            if (after_prev && (bi < 0 || before(l, j, bv, bi))) {
                bv = l;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || before(ov, oi, bv, bi))) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            wv[warp] = bv;
            wi[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < nw; w++)
                if (wi[w] >= 0 && (bi < 0 || before(wv[w], wi[w], bv, bi))) {
                    bv = wv[w];
                    bi = wi[w];
                }
            wv[0] = bv;
            wi[0] = bi;
            cv[t] = bv;
            ci[t] = bi;
        }
        __syncthreads();
        pv = wv[0];
        pi = wi[0];
        __syncthreads(); /* wv/wi are rewritten next round */
    }
    if (threadIdx.x != 0)
        return;
    sample_finish(tokens, cv, ci, k, p, step, b);
}

/* steps 3-5 over the k sorted candidates cv/ci: kernels/cpu/sample.c sample_row, line for
 * line (one thread). cv is overwritten with the probabilities. */
__device__ void sample_finish(int32_t *tokens, float *cv, const int32_t *ci, int k,
                              const dalle_sample_params &p, const int32_t *step, int b) {
    const float mx = cv[0];
    float z = 0;
    for (int i = 0; i < k; i++) {
        cv[i] = (float)exp((double)__fsub_rn(cv[i], mx));
        z = __fadd_rn(z, cv[i]);
    }
    for (int i = 0; i < k; i++)
        cv[i] = __fdiv_rn(cv[i], z);
    int kept = k;
    if (p.top_p < 1) {
        float cum = 0;
        for (int i = 1; i < k; i++) {
            cum = __fadd_rn(cum, cv[i - 1]);
            if (!(cum < p.top_p)) {
                kept = i;
                break;
            }
        }
    }
    float total = 0;
    for (int i = 0; i < kept; i++)
        total = __fadd_rn(total, cv[i]);
    const float target = __fmul_rn(dalle_rng_uniform(p.seed, p.image, (uint32_t)step[b]), total);
    float acc = 0;
    int32_t tok = ci[kept - 1];
    for (int i = 0; i < kept; i++) {
        acc = __fadd_rn(acc, cv[i]);
        if (acc > target) {
            tok = ci[i];
            break;
        }
    }
    tokens[b] = tok;
}

/* ---- the select-and-sort sampler (default for k ≤ FS_MAX_K) ----------------------------
 * Same candidates, same order, same tail as sample_kernel, in O(V + k log² k) per image:
 *  1. the guided logits into shared memory once;
 *  2. radix select (4 passes of 8 bits, most significant first) of the k-th largest under
 *     an order-preserving uint32 key (−0 folded onto +0, which compare equal as floats);
 *  3. the candidates, in index order: every logit whose key is above that threshold, then
 *     the first `need` (smallest indices) equal to it — exactly the k best under (value
 *     desc, index asc), ties included (a block-wide exclusive scan places them);
 *  4. a bitonic sort of the k (padded to a power of two with (−∞, INT_MAX)) by (value desc,
 *     index asc), then sample_finish on thread 0. */
#define FS_THREADS 512
#define FS_MAX_K   2048

__device__ __forceinline__ uint32_t order_key(float v) {
    const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v); /* −0 → +0 */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* exclusive prefix sum of v over the block (blockDim.x a multiple of 32); *total = the sum.
 * All threads must call it; sh: [32] ints. */
__device__ int block_excl_scan(int v, int *total, int *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int x = v;
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o)
            x += y;
    }
    if (lane == 31)
        sh[warp] = x;
    __syncthreads();
    if (warp == 0) {
        int w = lane < nw ? sh[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o)
                w += y;
        }
        if (lane < nw)
            sh[lane] = w; /* inclusive sums of the warp totals */
    }
    __syncthreads();
    const int off = warp ? sh[warp - 1] : 0;
    *total = sh[nw - 1];
    __syncthreads(); /* sh is reused by the next call */
    return off + x - v;
}

__global__ void __launch_bounds__(FS_THREADS)
    sample_fast_kernel(int32_t *tokens, const float *logits, int V, int ld,
                       const dalle_sample_params *params, const int32_t *step, float *cand_v,
                       int32_t *cand_i, int kmax, int sortn) {
    DALLE_SHARED_DYN(float, fs); /* g [V], sv [sortn], si [sortn] */
    float *g = fs, *sv = fs + V;
    int *si = (int *)(sv + sortn);
    __shared__ unsigned hist[256];
    __shared__ int scan_sh[32];
    __shared__ unsigned s_prefix, s_mask, s_need;
    __shared__ int s_base, s_eq;
    const int b = blockIdx.x, tid = threadIdx.x;
    const dalle_sample_params p = params[b];
    const float *lc = logits + (size_t)2 * b * ld; // [B, 2, ld]
    const float *lu = lc + ld;
    const int k = p.top_k < V ? p.top_k : V;
    for (int j = tid; j < V; j += blockDim.x)
        g[j] = guided(lc, lu, j, p.cond_scale, p.temperature);
    if (tid == 0)
        s_prefix = 0, s_mask = 0, s_need = (unsigned)k;
    __syncthreads();
    for (int shift = 24; shift >= 0; shift -= 8) { /* 2. radix select */
        for (int i = tid; i < 256; i += blockDim.x)
            hist[i] = 0;
        __syncthreads();
        const unsigned prefix = s_prefix, mask = s_mask;
        for (int j = tid; j < V; j += blockDim.x) {
            const uint32_t key = order_key(g[j]);
            if ((key & mask) == prefix)
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) { /* the digit holding the need-th largest among this prefix */
            unsigned need = s_need;
            int d = 255;
            for (; d > 0; d--) {
                if (hist[d] >= need)
                    break;
                need -= hist[d];
            }
            s_prefix = prefix | ((unsigned)d << shift);
            s_mask = mask | (255u << shift);
            s_need = need;
        }
        __syncthreads();
    }
    const uint32_t T = s_prefix;
    const int need_eq = (int)s_need; /* keys equal to T to take, smallest indices first */
    if (tid == 0)
        s_base = 0, s_eq = 0;
    __syncthreads();
    for (int j0 = 0; j0 < V; j0 += blockDim.x) { /* 3. candidates in index order */
        const int j = j0 + tid;
        const uint32_t key = j < V ? order_key(g[j]) : 0u;
        const int gt = j < V && key > T, eq = j < V && key == T;
        const int eq_before = s_eq, base = s_base;
        int eq_total, take_total;
        const int eq_rank = block_excl_scan(eq, &eq_total, scan_sh);
        const int take = gt || (eq && eq_before + eq_rank < need_eq);
        const int at = block_excl_scan(take, &take_total, scan_sh);
        if (take && base + at < sortn) {
            sv[base + at] = g[j];
            si[base + at] = j;
        }
        __syncthreads();
        if (tid == 0) {
            s_base = base + take_total;
            s_eq = eq_before + eq_total;
        }
        __syncthreads();
    }
    for (int i = k + tid; i < sortn; i += blockDim.x)
        sv[i] = -INFINITY, si[i] = INT_MAX;
    __syncthreads();
    for (int size = 2; size <= sortn; size <<= 1) /* 4. bitonic sort, best first */
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < sortn; i += blockDim.x) {
                const int l = i ^ stride;
                if (l <= i)
                    continue;
                const float av = sv[i], bv = sv[l];
                const int ai = si[i], bi = si[l];
                const bool up = (i & size) == 0;
                if (up ? before(bv, bi, av, ai) : before(av, ai, bv, bi)) {
                    sv[i] = bv, si[i] = bi;
                    sv[l] = av, si[l] = ai;
                }
            }
            __syncthreads();
        }
    float *cv = cand_v + (size_t)b * kmax;
    int32_t *ci = cand_i + (size_t)b * kmax;
    for (int i = tid; i < k; i += blockDim.x)
        cv[i] = sv[i], ci[i] = si[i];
    __syncthreads();
    if (tid != 0)
        return;
    sample_finish(tokens, cv, ci, k, p, step, b);
}

/* sample_dev's outputs: token b to rows[2b], rows[2b + 1] and codes[code_at[b]] */
__global__ void sample_scatter_kernel(int32_t *rows, int32_t *codes, const int32_t *code_at,
                                      const int32_t *tok, int B) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B)
        return;
    const int32_t t = tok[b];
    rows[2 * b] = t;
    rows[2 * b + 1] = t;
    codes[code_at[b]] = t;
}

/* Steps 1-5 for B ≥ 1 images into device tokens [B] (scratch 0), queued on the stream;
 * the host arrays params, step and extra ([B] int32 or NULL) are staged to the device,
 * extra's copy returned in *extra_dev. */
static int32_t *sample_launch(dalle_backend *be, const float *logits, int B, int V, int ld,
                              const dalle_sample_params *params, const int32_t *step,
                              const int32_t *extra, const int32_t **extra_dev) {
    DALLE_ASSERT(B >= 1 && V >= 1 && V <= ld);
    int kmax = 1;
    for (int b = 0; b < B; b++) {
        const dalle_sample_params *p = &params[b];
        DALLE_ASSERT(p->temperature > 0 && p->top_p > 0 && p->top_p <= 1 && p->top_k >= 1);
        DALLE_ASSERT(step[b] >= 0);
        const int k = p->top_k < V ? p->top_k : V;
        if (k > kmax)
            kmax = k;
    }
    dalle_cuda *cu = dalle_cuda_of(be);
    const void *src[3] = {params, step, extra};
    const size_t bytes[3] = {(size_t)B * sizeof *params, (size_t)B * sizeof *step,
                             extra ? (size_t)B * sizeof *extra : 0};
    void *dev[3];
    dalle_cuda_stage(be, 3, src, bytes, dev, "sample");
    *extra_dev = (const int32_t *)dev[2];
    const size_t nc = (size_t)B * kmax;
    char *scr = (char *)dalle_cuda_scratch(be, 0, nc * 8 + (size_t)B * 4, "sample");
    float *cand_v = (float *)scr;
    int32_t *cand_i = (int32_t *)(scr + nc * 4);
    int32_t *tok_dev = (int32_t *)(scr + nc * 8);
    /* the select-and-sort kernel unless k is large, the logits do not fit in shared memory,
     * or DALLE_CUDA_SAMPLER=rounds asks for the k-round kernel */
    int sortn = 1;
    while (sortn < kmax)
        sortn *= 2;
    const size_t fs_bytes = (size_t)V * 4 + (size_t)sortn * 8;
    const char *which = getenv("DALLE_CUDA_SAMPLER");
    const bool rounds =
        (which && strcmp(which, "rounds") == 0) || kmax > FS_MAX_K || fs_bytes > (size_t)160 * 1024;
    if (rounds) {
        DALLE_LAUNCH(sample_kernel, B, SAMPLE_THREADS, 0, cu->stream)
        (tok_dev, logits, V, ld, (const dalle_sample_params *)dev[0], (const int32_t *)dev[1],
         cand_v, cand_i, kmax);
    } else {
        if (fs_bytes > 48 * 1024)
            CUDA_CHECK(cudaFuncSetAttribute(sample_fast_kernel,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)fs_bytes),
                       "sample");
        DALLE_LAUNCH(sample_fast_kernel, B, FS_THREADS, fs_bytes, cu->stream)
        (tok_dev, logits, V, ld, (const dalle_sample_params *)dev[0], (const int32_t *)dev[1],
         cand_v, cand_i, kmax, sortn);
    }
    CUDA_LAUNCHED("sample");
    return tok_dev;
}

extern "C" void dalle_cuda_sample(dalle_backend *be, int32_t *tokens, const float *logits, int B,
                                  int V, int ld, const dalle_sample_params *params,
                                  const int32_t *step) {
    DALLE_ASSERT(B >= 0);
    if (B == 0)
        return;
    const int32_t *unused;
    int32_t *tok_dev = sample_launch(be, logits, B, V, ld, params, step, NULL, &unused);
    dalle_cuda *cu = dalle_cuda_of(be);
    CUDA_CHECK(cudaMemcpyAsync(tokens, tok_dev, (size_t)B * 4, cudaMemcpyDeviceToHost, cu->stream),
               "sample");
    CUDA_CHECK(cudaStreamSynchronize(cu->stream), "sample");
    be->to_host_copies++;
    be->syncs++;
}

extern "C" void dalle_cuda_sample_dev(dalle_backend *be, int32_t *rows, int32_t *codes,
                                      const int32_t *code_at, const float *logits, int B, int V,
                                      int ld, const dalle_sample_params *params,
                                      const int32_t *step) {
    DALLE_ASSERT(B >= 0);
    if (B == 0)
        return;
    const int32_t *at_dev;
    int32_t *tok_dev = sample_launch(be, logits, B, V, ld, params, step, code_at, &at_dev);
    DALLE_LAUNCH(sample_scatter_kernel, (B + 127) / 128, 128, 0, dalle_cuda_of(be)->stream)
    (rows, codes, at_dev, tok_dev, B);
    CUDA_LAUNCHED("sample_dev");
}
