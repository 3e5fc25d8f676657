/* cpu.h — internals of the CPU backend (the files in kernels/cpu/), not part of the seam.
 *
 * Contract: a CPU backend is used by one thread at a time (ops.h); inside an op the work is
 * spread over the backend's `threads` by `dalle_cpu_for` (pool.c). `dalle_cpu_scratch` hands
 * out one grow-only buffer per backend that an op may use until it returns; each op that
 * needs per-thread space slices it by `threads`, indexed by the thread index its items get.
 * Load-time weight packing (ops.h pack) has no backend and uses OpenMP.
 */
#ifndef DALLE_KERNELS_CPU_CPU_H
#define DALLE_KERNELS_CPU_CPU_H

#include "common/error.h"
#include "kernels/ops.h"

/* Weights are read by the GEMM in panels of this many rows of W (linalg.c). */
#define DALLE_CPU_PANEL 16

/* One instruction set's GEMM tile (linalg.c, linalg_tile.h): out[r, c] for r < mr ≤ `mr`
 * (`mr_wide` when np = 2) and c < 16·np (row stride ldo) = (out when load) + rows
 * xr[r][0..K) · np panels at w. */
typedef struct {
    const char *name;
    void (*tile)(float *out, size_t ldo, const float *const *xr, const uint8_t *w, size_t pbytes,
                 int K, int load, int mr, int np, dalle_dtype dt);
    int mr, mr_wide;
} dalle_cpu_gemm_variant;

/* The rows of a GEMM's x, K values each, in segments of seg_len (the last may be shorter):
 * get() sets ptr[seg·stride + r] to the first value of segment seg of row m + r, for
 * r < mr ≤ 8 and every seg < ceil(K / seg_len) ≤ DALLE_CPU_MAX_SEGS (row m's values of a
 * segment are contiguous). Embed it as the first member of a struct holding what get()
 * needs. */
#define DALLE_CPU_MAX_SEGS 64
typedef struct dalle_cpu_rows {
    void (*get)(const struct dalle_cpu_rows *rows, int m, int mr, const float **ptr, int stride);
    int K, seg_len;
} dalle_cpu_rows;

/* The backend's threads (pool.c). */
typedef struct dalle_cpu_pool dalle_cpu_pool;
dalle_cpu_pool *dalle_cpu_pool_new(int threads);
void dalle_cpu_pool_free(dalle_cpu_pool *pool);

typedef struct {
    int threads; /* ≥ 1: the calling thread and threads − 1 workers */
    dalle_cpu_pool *pool;
    const dalle_cpu_gemm_variant *gemm;
    void *scratch; /* grow-only, 64-byte aligned */
    size_t scratch_bytes;
    void *map; /* grow-only, 64-byte aligned: a whole feature map (conv2d_gn) */
    size_t map_bytes;
} dalle_cpu;

/* Below this many elements of work an op runs on the calling thread only. */
#define DALLE_CPU_PAR_MIN 16384

/* One item of an op: task(ctx, i, thread) computes item i; thread (< threads) selects the
 * caller's per-thread scratch only — an item's result must not depend on it. */
typedef void (*dalle_cpu_task)(void *ctx, int64_t i, int thread);

/* Runs task for every item i < n and returns when all have run: over the backend's threads
 * when par, else on the calling thread in increasing i. Items are claimed in runs of
 * increasing i by whichever thread is free. Called from inside an item (an op calling the
 * GEMM per block), it runs there, in order. */
void dalle_cpu_for(dalle_backend *be, int64_t n, int par, dalle_cpu_task task, void *ctx);

static inline dalle_cpu *dalle_cpu_of(dalle_backend *be) {
    return (dalle_cpu *)be->impl;
}

/* A buffer of at least `bytes`, valid until the next call on the same backend; NULL when
 * memory runs out, with be->failed set (ops.h): the op then returns without working. */
void *dalle_cpu_scratch(dalle_backend *be, size_t bytes);

/* A second such buffer, for a feature map an op keeps while it calls ops that use the
 * scratch. */
void *dalle_cpu_map(dalle_backend *be, size_t bytes);

/* The fp32 data of a weight, after checking its dtype. */
static inline const float *dalle_cpu_f32(const dalle_tensor *t) {
    DALLE_ASSERT(t && t->dtype == DALLE_F32 && t->data);
    return (const float *)t->data;
}

/* dst[i] = (add ? dst[i] : 0) + src[i] widened to fp32, i < n; src of dtype dt. */
void dalle_cpu_widen(float *dst, const void *src, dalle_dtype dt, int64_t n, int add);

/* The GEMM variant called `name` (NULL or "": the fastest), NULL when this CPU lacks it. */
const dalle_cpu_gemm_variant *dalle_cpu_gemm_pick(const char *name);
/* The variants compiled in, fastest first, space-separated ("avx512 avx2 portable" on x86). */
void dalle_cpu_gemm_names(char *out, size_t size);

/* W [N, K] of dtype dt, row-major → panels (linalg.c). */
size_t dalle_cpu_pack_bytes(int64_t N, int64_t K, dalle_dtype dt);
void dalle_cpu_pack(void *dst, const void *src, int64_t N, int64_t K, dalle_dtype dt);

/* ops.h pack_bytes / pack: a Winograd conv weight in its form (conv.c), any other weight t
 * as panels of [t->shape[0], numel / t->shape[0]]. */
size_t dalle_cpu_pack_weight_bytes(const dalle_tensor *t);
void dalle_cpu_pack_weight(void *dst, const void *src, const dalle_tensor *t);

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) · W[:N, :K]ᵀ (+ y when accumulate),
 * W any weight of shape [N_w ≥ N, …] holding N_w·K values (a matmul or conv weight), packed
 * or row-major. Row-invariant: see linalg.c. */
void dalle_cpu_gemm(dalle_backend *be, float *y, size_t ldy, const float *x, size_t ldx,
                    const dalle_tensor *w, int M, int N, int K, int accumulate);

/* The same product with x given by `rows` (K = rows->K): each output is
 * the same single chain of terms in k order, so the bits equal dalle_cpu_gemm's on the
 * same values. */
void dalle_cpu_gemm_rows(dalle_backend *be, float *y, size_t ldy, const dalle_cpu_rows *rows,
                         const dalle_tensor *w, int M, int N, int accumulate);
void dalle_cpu_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                      int N, int K, int accumulate);
void dalle_cpu_layernorm(dalle_backend *be, float *y, const float *x, const dalle_tensor *gamma,
                         const dalle_tensor *beta, int rows, int C, float eps);
void dalle_cpu_embed(dalle_backend *be, float *y, const dalle_tensor *table, const int32_t *ids,
                     const dalle_tensor *pos_table, const int32_t *pos, int rows, int C);
void dalle_cpu_attention(dalle_backend *be, float *out, const float *q, const float *k,
                         const float *v, const int32_t *kv_index, const uint8_t *key_mask,
                         const int32_t *causal_pos, int B, int Tq, int Tk, int kv_cap, int H,
                         int D);
void dalle_cpu_decode_attention(dalle_backend *be, float *out, const float *q, const float *k,
                                const float *v, void *kc, void *vc, const int32_t *slot,
                                const int32_t *pos, int B, int cap, int H, int D);
void dalle_cpu_cross_attention(dalle_backend *be, float *out, const float *q, const float *k,
                               const float *v, const int32_t *block, const uint8_t *key_mask, int B,
                               int T, int H, int D);
void dalle_cpu_kv_store(dalle_backend *be, float *cache, const float *src, const int32_t *slot,
                        const int32_t *pos, int B, int T, int C, int cap);
void dalle_cpu_gelu_mul(dalle_backend *be, float *y, const float *a, const float *b, int64_t n);
void dalle_cpu_add(dalle_backend *be, float *y, const float *x, int64_t n);
void dalle_cpu_bias_add(dalle_backend *be, float *y, const dalle_tensor *bias, int rows, int N);
void dalle_cpu_quick_gelu(dalle_backend *be, float *y, const float *x, int64_t n);
void dalle_cpu_patchify(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C,
                        int p);
void dalle_cpu_sample_dev(dalle_backend *be, int32_t *rows, int32_t *codes, const int32_t *code_at,
                          const float *logits, int B, int V, int ld,
                          const dalle_sample_params *params, const int32_t *step);
void dalle_cpu_sample(dalle_backend *be, int32_t *tokens, const float *logits, int B, int V, int ld,
                      const dalle_sample_params *params, const int32_t *step);

#endif /* DALLE_KERNELS_CPU_CPU_H */
