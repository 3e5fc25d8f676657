/* sample.c — CPU guided sampling, exactly the algorithm of ops.h (CFG, temperature, top-k
 * ordered by (value desc, index asc), softmax, top-p prefix, one Philox uniform).
 *
 * Top-k is a bounded heap whose root is the worst kept candidate: O(V) compares plus
 * O(log k) per replacement, then a heapsort of the k survivors (for k = V this is a full
 * heapsort). Sums (softmax normaliser, top-p prefix, sampling walk) are fp32, sequential in
 * sorted order. Rows run in parallel; each thread owns a [k] slice of the backend scratch.
 */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/rng.h"

typedef struct {
    float v;   /* guided, tempered logit; after sorting, its probability */
    int32_t i; /* vocabulary index */
} cand;

/* a ranks after b in (value desc, index asc) order */
static inline int worse(cand a, cand b) {
    return a.v < b.v || (a.v == b.v && a.i > b.i);
}

/* Restores the worst-at-root heap property below node r of h[0..n). */
static void sift_down(cand *h, int n, int r) {
    for (;;) {
        int w = r;
        const int c0 = 2 * r + 1, c1 = 2 * r + 2;
        if (c0 < n && worse(h[c0], h[w]))
            w = c0;
        if (c1 < n && worse(h[c1], h[w]))
            w = c1;
        if (w == r)
            return;
        const cand t = h[r];
        h[r] = h[w];
        h[w] = t;
        r = w;
    }
}

/* ops.h step 1, in this exact fp32 order. */
static inline float guided(const float *lc, const float *lu, int j, float s, float temp) {
    return (lu[j] + s * (lc[j] - lu[j])) / temp;
}

/* The k best of the guided logits, sorted best first into h[0..k). */
static void top_k(cand *h, int k, const float *restrict lc, const float *restrict lu, int V,
                  float s, float temp) {
    for (int j = 0; j < k; j++)
        h[j] = (cand){guided(lc, lu, j, s, temp), j};
    for (int r = k / 2 - 1; r >= 0; r--)
        sift_down(h, k, r);
    /* Later indices lose ties, so only a strictly larger value displaces the root. */
    for (int j = k; j < V; j++) {
        const float l = guided(lc, lu, j, s, temp);
        if (l > h[0].v) {
            h[0] = (cand){l, j};
            sift_down(h, k, 0);
        }
    }
    for (int n = k - 1; n > 0; n--) { /* heapsort: the worst goes to the back */
        const cand t = h[0];
        h[0] = h[n];
        h[n] = t;
        sift_down(h, n, 0);
    }
}

static int32_t sample_row(cand *h, const float *lc, const float *lu, int V,
                          const dalle_sample_params *p, int32_t step) {
    DALLE_ASSERT(p->temperature > 0 && p->top_p > 0 && p->top_p <= 1 && p->top_k >= 1);
    DALLE_ASSERT(step >= 0);
    const int k = p->top_k < V ? p->top_k : V;
    top_k(h, k, lc, lu, V, p->cond_scale, p->temperature);

    const float mx = h[0].v;
    float z = 0;
    for (int i = 0; i < k; i++) {
        h[i].v = expf(h[i].v - mx);
        z += h[i].v;
    }
    for (int i = 0; i < k; i++)
        h[i].v /= z;

    int kept = k;
    if (p->top_p < 1) {
        float cum = 0;
        for (int i = 1; i < k; i++) {
            cum += h[i - 1].v;
            if (!(cum < p->top_p)) {
                kept = i;
                break;
            }
        }
    }
    float total = 0;
    for (int i = 0; i < kept; i++)
        total += h[i].v;
    const float target = dalle_rng_uniform(p->seed, p->image, (uint32_t)step) * total;
    float acc = 0;
    for (int i = 0; i < kept; i++) {
        acc += h[i].v;
        if (acc > target)
            return h[i].i;
    }
    return h[kept - 1].i;
}

typedef struct {
    int32_t *tokens;
    const float *logits;
    int V, ld, kmax;
    const dalle_sample_params *params;
    const int32_t *step;
    cand *scratch; // [threads, kmax]
} sample_args;

static void sample_item(void *ctx, int64_t b, int thread) {
    const sample_args *a = ctx;
    const float *lc = a->logits + (size_t)2 * b * a->ld; // [B, 2, ld]
    a->tokens[b] = sample_row(a->scratch + (size_t)thread * a->kmax, lc, lc + a->ld, a->V,
                              &a->params[b], a->step[b]);
}

static void sample_tokens(dalle_backend *be, int32_t *tokens, const float *logits, int B, int V,
                          int ld, const dalle_sample_params *params, const int32_t *step) {
    DALLE_ASSERT(B >= 0 && V >= 1 && V <= ld);
    const int threads = dalle_cpu_of(be)->threads;
    int kmax = 1;
    for (int b = 0; b < B; b++)
        if (params[b].top_k > kmax)
            kmax = params[b].top_k < V ? params[b].top_k : V;
    cand *scratch = dalle_cpu_scratch(be, (size_t)threads * kmax * sizeof(cand));
    if (!scratch)
        return; // be->failed is set
    sample_args a = {.tokens = tokens,
                     .logits = logits,
                     .V = V,
                     .ld = ld,
                     .kmax = kmax,
                     .params = params,
                     .step = step,
                     .scratch = scratch};
    dalle_cpu_for(be, B, B > 1, sample_item, &a);
}

/* The tokens come back to the host: counted as a copy and a wait (ops.h dalle_backend). */
void dalle_cpu_sample(dalle_backend *be, int32_t *tokens, const float *logits, int B, int V, int ld,
                      const dalle_sample_params *params, const int32_t *step) {
    sample_tokens(be, tokens, logits, B, V, ld, params, step);
    be->to_host_copies++;
    be->syncs++;
}

/* rows [2B]: the B tokens land in rows[0..B) first, then spread from the top down (entry b
 * moves to 2b and 2b + 1 after every entry above it has moved, so none is overwritten
 * unread). */
void dalle_cpu_sample_dev(dalle_backend *be, int32_t *rows, int32_t *codes, const int32_t *code_at,
                          const float *logits, int B, int V, int ld,
                          const dalle_sample_params *params, const int32_t *step) {
    sample_tokens(be, rows, logits, B, V, ld, params, step);
    if (be->failed)
        return; // no tokens: rows and codes keep their values
    for (int b = B - 1; b >= 0; b--) {
        const int32_t t = rows[b];
        rows[2 * b + 1] = rows[2 * b] = t;
        codes[code_at[b]] = t;
    }
}
