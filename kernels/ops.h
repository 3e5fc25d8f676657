/* ops.h — the backend seam: every tensor operation the networks need, as a table of
 * function pointers with one CPU implementation (kernels/cpu/) and one CUDA implementation
 * (kernels/cuda/). Model code (the files under model/) calls only these.
 *
 * Contract:
 *  - Activations are fp32 and live in backend memory (host memory for the CPU backend,
 *    device memory for CUDA); they are passed as plain float pointers, row-major.
 *  - Weights are dalle_tensor, in backend memory, in the backend's weight dtype
 *    (`weight_dtype`, or the file's 16-bit dtype under `keep_16bit`) and, for matmul and
 *    conv weights of a backend with `pack`, in its packed layout; a weight is never written
 *    after upload.
 *  - Small per-call parameter arrays (ids, positions, slot indexes, sampling params) are
 *    host memory; the backend copies them where it needs them.
 *  - Ops are ordered: each sees the results of the ones called before it on the same
 *    backend. `sync` waits until all of them are done.
 *  - Ops never fail on valid arguments; sizes are checked by the caller. Invalid sizes
 *    are broken invariants (DALLE_ASSERT). The one failure an op reports is running out of
 *    working memory (the CPU backend's scratch): it then does nothing and sets
 *    dalle_backend.failed to DALLE_ERR_NOMEM, which stays set until the caller clears it,
 *    and the results of the ops since are undefined (the engine checks it after each call
 *    and returns the status).
 */
#ifndef DALLE_KERNELS_OPS_H
#define DALLE_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DALLE_F32 = 0, DALLE_F16, DALLE_BF16 } dalle_dtype;

size_t dalle_dtype_size(dalle_dtype t);
const char *dalle_dtype_name(dalle_dtype t);

#define DALLE_MAX_DIMS 4

/* A weight tensor in backend memory. shape is the logical shape; packed: data is in the
 * backend's matmul layout (ops pack) rather than row-major. */
typedef struct {
    void *data;
    dalle_dtype dtype;
    int ndim;
    int packed;
    int64_t shape[DALLE_MAX_DIMS];
} dalle_tensor;

int64_t dalle_tensor_numel(const dalle_tensor *t);

/* Per-image sampling parameters (host memory). */
typedef struct {
    float cond_scale;  /* CFG: l = l_u + s·(l_c − l_u) */
    float temperature; /* > 0; logits are divided by it */
    float top_p;       /* (0, 1]; 1 = off */
    int top_k;         /* ≥ 1; values above V are clamped to V */
    uint64_t seed;     /* RNG key */
    uint32_t image;    /* image index inside its request: RNG counter word 0 */
} dalle_sample_params;

/* A CLIP image preprocessing plan (model/image_prep.c computes the numbers): Pillow's
 * 8-bit bicubic resize of in_w×in_h RGB to out_w×out_h as separable fixed-point passes —
 * output i of an axis is Σ_j src[first[i] + j]·coef[i, j] over j < count[i], the sum
 * starting at 2^21, then >> 22 and clipped to [0, 255] (a negative sum gives 0) — the
 * horizontal pass first unless vertical_first, an axis resampled only when its flag is set;
 * then the size×size crop at (top, left) of the resized image, v = float(u · (1/255) in
 * double) and (v − mean[c]) / std[c] in float. */
typedef struct {
    int in_w, in_h, out_w, out_h, size, top, left;
    int horizontal, vertical, vertical_first;
    int taps_x, taps_y;
    const int32_t *first_x, *count_x,
        *coef_x; /* backend memory: [out_w], [out_w], [out_w, taps_x] */
    const int32_t *first_y, *count_y,
        *coef_y; /* backend memory: [out_h], [out_h], [out_h, taps_y] */
    float mean[3], std[3];
} dalle_clip_prep_plan;

typedef struct dalle_backend dalle_backend;

typedef struct {
    const char *name;
    dalle_dtype weight_dtype;
    /* Non-zero: a matrix (ndim ≥ 2) stored F16 or BF16 in its file keeps that dtype instead
     * of weight_dtype (the backend's ops widen it); vectors still become weight_dtype. */
    int keep_16bit;
    /* Optional (NULL: matmul weights stay row-major). The bytes of weight t (its logical
     * shape and dtype: a matmul's [N, K], a conv's [Cout, k, k, Cin]) in the backend's
     * layout, and the packing of its row-major host data (of dtype t->dtype) into host
     * memory; the loader packs every matmul and conv weight with them. */
    size_t (*pack_bytes)(const dalle_tensor *t);
    void (*pack)(void *dst, const void *src, const dalle_tensor *t);

    void *(*alloc)(dalle_backend *be, size_t bytes); /* NULL on failure */
    void (*free)(dalle_backend *be, void *p);
    void (*to_device)(dalle_backend *be, void *dst, const void *src, size_t bytes);
    void (*to_host)(dalle_backend *be, void *dst, const void *src, size_t bytes);
    /* dst = src, both in backend memory, ordered like an op (no wait for the device). */
    void (*copy)(dalle_backend *be, void *dst, const void *src, size_t bytes);
    void (*sync)(dalle_backend *be);
    void (*destroy)(dalle_backend *be);
    /* Optional: the name of the kernel variant this backend runs (CPU: the GEMM's
     * instruction set). */
    const char *(*variant)(dalle_backend *be);

    /* y[M,N] = x[M,K] · W[:N, :K]ᵀ (+ y when accumulate). W is [N_w, K] with N ≤ N_w, so a
     * caller may use only the first N output rows of a weight (lm_head restricted to the
     * image codes). Row invariance (dalle.h, reproducibility contract): on the CPU, row m of y
     * is bit-identical whatever M (the batch); the CUDA backend promises it for one M only
     * (cuBLAS chooses its kernel by shape). */
    void (*matmul)(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M, int N,
                   int K, int accumulate);

    /* y[rows,C] = (x − mean)/sqrt(var + eps) · gamma + beta, biased variance.
     * gamma NULL = 1 (bias-only LayerNorm); beta NULL = 0. y may equal x. */
    void (*layernorm)(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                      const dalle_tensor *beta, int rows, int C, float eps);

    /* y[r,:] = table[ids[r],:] + pos_table[pos[r],:], r < rows; pos_table NULL (and pos
     * ignored) = no position term. ids/pos are host arrays, range-checked by the caller. */
    void (*embed)(dalle_backend *be, float *y, const dalle_tensor *table, const int32_t *ids,
                  const dalle_tensor *pos_table, const int32_t *pos, int rows, int C);

    /* Multi-head attention, H heads of D (C = H·D):
     *   out[b,i,:] = concat_h softmax_j( q[b,i,h]·k[blk,j,h] / sqrt(D) ) · v[blk,j,h]
     * q, out: [B, Tq, C]. k, v: blocks of [kv_cap, C]; row b reads block
     * blk = kv_index ? kv_index[b] : b. Keys j < Tk are considered, and key j is visible iff
     * (key_mask == NULL || key_mask[blk·kv_cap + j]) and
     * (causal_pos == NULL || j ≤ causal_pos[b] + i).
     * Every query must see at least one key (broken invariant otherwise).
     * kv_index, key_mask, causal_pos are host arrays. */
    void (*attention)(dalle_backend *be, float *out, const float *q, const float *k, const float *v,
                      const int32_t *kv_index, const uint8_t *key_mask, const int32_t *causal_pos,
                      int B, int Tq, int Tk, int kv_cap, int H, int D);

    /* y[i] = gelu_erf(a[i]) · b[i], i < n (GLU middle). y may equal a or b. */
    void (*gelu_mul)(dalle_backend *be, float *y, const float *a, const float *b, int64_t n);

    /* y[i] += x[i], i < n (residual). */
    void (*add)(dalle_backend *be, float *y, const float *x, int64_t n);

    /* Guided sampling, one token per image, B images.
     * logits: [B, 2, ld] (row 2b = conditional, 2b+1 = unconditional), of which the first
     * V columns are the candidates. step[b] is the decode step (RNG counter word 1).
     * Exact algorithm (identical on every backend):
     *  1. l[j] = (l_u[j] + s·(l_c[j] − l_u[j])) / temperature, j < V;
     *  2. keep the k = min(top_k, V) largest, ordered by (value desc, index asc);
     *  3. p = softmax over the kept (max subtracted);
     *  4. top-p < 1: keep sorted entry i iff i == 0 or cumsum(p[0..i-1]) < top_p;
     *  5. u = dalle_rng_uniform(seed, image, step) in [0,1); walk the kept entries in order,
     *     acc += p_i, return the first with acc > u · (sum of kept p); the last if none.
     * tokens: host [B]. */
    void (*sample)(dalle_backend *be, int32_t *tokens, const float *logits, int B, int V, int ld,
                   const dalle_sample_params *params, const int32_t *step);

    /* ---- image side (VQGAN, CLIP). Feature maps are NHWC: [B, H, W, C]. ---- */

    /* y[B,H,W,Cout] = conv2d(x[B,H,W,Cin]) + bias, kernel k×k (k odd), stride 1, zero
     * padding k/2. w is [Cout, k, k, Cin] (the loader reorders torch's [Cout, Cin, k, k]);
     * bias [Cout] or NULL. y must not alias x. */
    void (*conv2d)(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                   const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k);

    /* GroupNorm over [B, HW, C] with `groups` groups of C/groups channels, statistics per
     * (b, group) over HW·C/groups values, biased variance, then ·gamma + beta [C]; when
     * swish is non-zero, y = t·sigmoid(t) afterwards. y may equal x. */
    void (*group_norm)(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                       const dalle_tensor *beta, int B, int HW, int C, int groups, float eps,
                       int swish);

    /* Nearest-neighbour ×2: y[B, 2H, 2W, C] from x[B, H, W, C]. */
    void (*upsample2x)(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C);

    /* y[rows, N] += bias[N]. */
    void (*bias_add)(dalle_backend *be, float *y, const dalle_tensor *bias, int rows, int N);

    /* y[i] = x[i]·sigmoid(1.702·x[i]) (CLIP's quick GELU). y may equal x. */
    void (*quick_gelu)(dalle_backend *be, float *y, const float *x, int64_t n);

    /* Non-overlapping p×p patches: y[B, (H/p)·(W/p), p·p·C] from x[B, H, W, C], patch rows
     * in raster order, each patch flattened as (dy, dx, c). H and W are multiples of p. */
    void (*patchify)(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C,
                     int p);

    /* ---- cached decode step with device-resident indices (embed_dev, decode_attention and
     * cross_attention are required: the decoder step runs on them). Unlike the ops above,
     * the index arrays of these ops (ids, pos, slot, block, key_mask) live in BACKEND
     * memory, so a recorded step (graph_* below) replays with new values written there. ---- */

    /* Element type of the decode self-attention cache used by decode_attention (DALLE_F32
     * on the CPU; DALLE_F16 / DALLE_BF16 halve the cache on the GPU, math stays fp32). */
    dalle_dtype kv_dtype;

    /* sample with the tokens left in BACKEND memory, nothing returned to the host (no
     * sync): the token of image b is written to rows[2b] and rows[2b + 1] (the next decode
     * step's token ids of its conditional and unconditional rows, as embed_dev reads them)
     * and to codes[code_at[b]]. logits, params, step as sample; code_at host [B]. */
    void (*sample_dev)(dalle_backend *be, int32_t *rows, int32_t *codes, const int32_t *code_at,
                       const float *logits, int B, int V, int ld, const dalle_sample_params *params,
                       const int32_t *step);

    /* embed with ids, pos in backend memory (same contract otherwise). */
    void (*embed_dev)(dalle_backend *be, float *y, const dalle_tensor *table, const int32_t *ids,
                      const dalle_tensor *pos_table, const int32_t *pos, int rows, int C);

    /* Decode self-attention fused with the cache append, one query per row, H heads of D:
     *   kc[slot[b], pos[b], :] = k[b, :];  vc[slot[b], pos[b], :] = v[b, :]  (kv_dtype)
     *   out[b, h] = Σ_{j ≤ pos[b]} softmax_j(q[b,h]·kc[slot[b],j,h] / sqrt(D)) · vc[slot[b],j,h]
     * q, k, v, out: [B, C] fp32; kc, vc: [slots, cap, C] in kv_dtype; slot, pos: backend
     * int32 [B] with 0 ≤ pos[b] < cap (each row attends over its own length pos[b] + 1).
     * Rows must use distinct slots, except rows that write identical k, v. */
    void (*decode_attention)(dalle_backend *be, float *out, const float *q, const float *k,
                             const float *v, void *kc, void *vc, const int32_t *slot,
                             const int32_t *pos, int B, int cap, int H, int D);

    /* Cross-attention, one query per row: out[b] = attention(q[b], k[blk], v[blk]) over the
     * keys j < T with key_mask[blk·T + j], blk = block[b]; k, v: [blocks, T, C] fp32;
     * block: backend int32 [B]; key_mask: backend uint8 [blocks, T]. A row whose block has
     * no visible key gets zeros (the CPU asserts instead; model code never does that). */
    void (*cross_attention)(dalle_backend *be, float *out, const float *q, const float *k,
                            const float *v, const int32_t *block, const uint8_t *key_mask, int B,
                            int T, int H, int D);

    /* Recording (CUDA graphs). graph_begin: the ops that follow are recorded, not run;
     * returns 0 when the backend will not record (then nothing changes). graph_end: stops
     * recording, returns a replayable handle or NULL (recording failed; the recorded ops
     * did not run — run them again eagerly). graph_launch: replays the ops with the values
     * the backend-memory index arrays hold at that moment; returns 0, launching nothing,
     * when the handle went stale (a scratch buffer it uses was reallocated): free it and
     * run eagerly. While recording only device-index ops (and matmul, layernorm, add,
     * gelu_mul) may be called, and nothing may be allocated or copied. */
    int (*graph_begin)(dalle_backend *be);
    void *(*graph_end)(dalle_backend *be);
    int (*graph_launch)(dalle_backend *be, void *graph);
    void (*graph_free)(dalle_backend *be, void *graph);

    /* ---- image side, fused (optional slots: NULL = use the unfused ops) ---- */

    /* y[B,H,W,Cout] = conv2d(upsample2x(x)) + bias for x [B, H/2, W/2, Cin] (H, W even): the
     * values of upsample2x followed by conv2d, without the upsampled map in memory. */
    void (*conv2d_up2x)(dalle_backend *be, float *y, const float *x, const dalle_tensor *w,
                        const dalle_tensor *bias, int B, int H, int W, int Cin, int Cout, int k);

    /* y[B,H,W,Cout] = conv2d(group_norm(x) [+ swish]) + bias: the group_norm op (gamma,
     * beta [Cin], `groups` groups, eps, swish) followed by conv2d, without the normalised map
     * in memory. x [B, H, W, Cin]; y must not alias x. */
    void (*conv2d_gn)(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                      const dalle_tensor *beta, int groups, float eps, int swish,
                      const dalle_tensor *w, const dalle_tensor *bias, int B, int H, int W, int Cin,
                      int Cout, int k);

    /* Pixels: y[i] = (uint8_t)(clamp(x[i], 0, 1) · 255) with NaN → 0, one fp32 multiply then
     * truncation (model/vqgan.c dalle_vqgan_to_u8); y in backend memory. nonfinite (backend
     * int32 [1], or NULL) is set to 1 when some x[i] is NaN or ±inf and left as it was
     * otherwise (the caller clears it), so a decode's bad output is seen without the floats. */
    void (*to_rgb8)(dalle_backend *be, uint8_t *y, const float *x, int64_t n, int32_t *nonfinite);

    /* CLIP preprocessing: pixels [B, size, size, 3] fp32 from rgb [B, in_h, in_w, 3] uint8,
     * both in backend memory, by the plan (above), byte-exact with model/image_prep.c. */
    void (*clip_prep)(dalle_backend *be, float *pixels, const uint8_t *rgb,
                      const dalle_clip_prep_plan *plan, int B);
} dalle_backend_ops;

/* to_host_copies, syncs: the device→host copies and the waits for the device (sync, and
 * those to_host and host-returning ops such as sample make) done so far on this backend;
 * the CPU backend counts its memcpys and no-op syncs as a device's would be counted, so
 * that tests can check where a pipeline waits without a GPU. Only the thread driving the
 * backend writes them. */
struct dalle_backend {
    const dalle_backend_ops *ops;
    void *impl;
    long to_host_copies, syncs;
    dalle_status failed; /* DALLE_OK, or DALLE_ERR_NOMEM (see the contract above) */
};

/* CPU backend: weights at the file's precision (F32, or F16/BF16 matrices kept 16-bit),
 * packed for the GEMM core of kernels/cpu/linalg.c; OpenMP threads. threads ≤ 0: all cores.
 * The GEMM variant is the fastest this CPU runs, or the one DALLE_CPU_GEMM names
 * (avx512, avx2, portable) when the CPU has it. */
dalle_backend *dalle_backend_cpu_new(int threads);

#ifdef __cplusplus
}
#endif
#endif /* DALLE_KERNELS_OPS_H */
