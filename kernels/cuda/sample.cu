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
 * Speed work left: k rounds cost O(k·V/threads) — fine for k ≤ a few hundred, slow for
 * k ≈ V (a radix select would fix it); the host round trip for the tokens goes away when
 * the decode loop feeds tokens to the next embed on the device (CUDA graphs).
 */
#include <math.h>

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

__global__ void sample_kernel(int32_t *tokens, const float *logits, int V, int ld,
                              const dalle_sample_params *params, const int32_t *step,
                              float *cand_v, int32_t *cand_i, int kmax) {
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
    if (threadIdx.x != 0) return;

    /* steps 3-5: kernels/cpu/sample.c sample_row, line for line */
    const float mx = cv[0];
    float z = 0;
    for (int i = 0; i < k; i++) {
        cv[i] = (float)exp((double)__fsub_rn(cv[i], mx));
        z = __fadd_rn(z, cv[i]);
    }
    for (int i = 0; i < k; i++) cv[i] = __fdiv_rn(cv[i], z);
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
    for (int i = 0; i < kept; i++) total = __fadd_rn(total, cv[i]);
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

extern "C" void dalle_cuda_sample(dalle_backend *be, int32_t *tokens, const float *logits, int B,
                                  int V, int ld, const dalle_sample_params *params,
                                  const int32_t *step) {
    DALLE_ASSERT(B >= 0 && V >= 1 && V <= ld);
    if (B == 0) return;
    int kmax = 1;
    for (int b = 0; b < B; b++) {
        const dalle_sample_params *p = &params[b];
        DALLE_ASSERT(p->temperature > 0 && p->top_p > 0 && p->top_p <= 1 && p->top_k >= 1);
        DALLE_ASSERT(step[b] >= 0);
        const int k = p->top_k < V ? p->top_k : V;
        if (k > kmax) kmax = k;
    }
    dalle_cuda *cu = dalle_cuda_of(be);
    const void *src[2] = {params, step};
    const size_t bytes[2] = {(size_t)B * sizeof *params, (size_t)B * sizeof *step};
    void *dev[2];
    dalle_cuda_stage(be, 2, src, bytes, dev, "sample");
    const size_t nc = (size_t)B * kmax;
    char *scr = (char *)dalle_cuda_scratch(be, 0, nc * 8 + (size_t)B * 4, "sample");
    float *cand_v = (float *)scr;
    int32_t *cand_i = (int32_t *)(scr + nc * 4);
    int32_t *tok_dev = (int32_t *)(scr + nc * 8);
    sample_kernel<<<B, SAMPLE_THREADS, 0, cu->stream>>>(
        tok_dev, logits, V, ld, (const dalle_sample_params *)dev[0], (const int32_t *)dev[1],
        cand_v, cand_i, kmax);
    CUDA_LAUNCHED("sample");
    CUDA_CHECK(cudaMemcpyAsync(tokens, tok_dev, (size_t)B * 4, cudaMemcpyDeviceToHost, cu->stream),
               "sample");
    CUDA_CHECK(cudaStreamSynchronize(cu->stream), "sample");
}
