/* gpu_bench.c — timings of the CUDA backend with random weights made on the device (nothing
 * stored): one DalleBart decode step at DALL·E mini and Mega sizes for 1, 8 and 16 images
 * (2 decoder rows each: conditional + unconditional), fp32 and fp16 weights, and one
 * VQGAN decode of a 16×16 code grid to 256×256 pixels (taming-transformers f16 decoder
 * layout). Printed as a table; the decode rows give the weight bytes streamed per step and
 * the bandwidth that achieves (peak ≈ 3.35 TB/s HBM3 on an H100 SXM).
 *
 *   gpu_bench [--quick] [--cpu]
 *   --quick: mini only, 3 timed steps, batch 1 (a smoke test);
 *   --cpu: the same op sequences on the CPU backend, fp32 (a dry run of this program on a
 *   machine without a GPU: every op's argument checks run; timings are the CPU's).
 *
 * The decode step is the op sequence of model/bart.c's decoder at step 128 (self-attention
 * over 129 cached keys, cross-attention over 64 text keys, GLU, final LayerNorm, lm_head
 * over the image codes, guided top-k sampling with the host round trip for the tokens).
 * Exit 0, or 2 without a CUDA device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda.h"

static dalle_backend *be;
static uint64_t seed = 1;
static int use_cpu;

/* n random values of dtype at backend address p */
static void fill(void *p, int64_t n, dalle_dtype dt, float scale) {
    if (!use_cpu) {
        dalle_cuda_fill_random(be, p, n, dt, scale, seed++);
        return;
    }
    float *f = p; /* the CPU backend: host memory, fp32 */
    uint64_t z = seed++;
    for (int64_t i = 0; i < n; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        f[i] = ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
    }
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *dalloc(size_t bytes) {
    void *p = be->ops->alloc(be, bytes);
    if (!p) {
        fprintf(stderr, "gpu_bench: cannot allocate %.2f GB on the device\n", bytes / 1e9);
        exit(1);
    }
    return p;
}

/* a weight [a, b] (b = 0: 1-D) of the backend's dtype, random */
static dalle_tensor W(int64_t a, int64_t b, float scale, size_t *bytes) {
    dalle_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = be->ops->weight_dtype;
    t.ndim = b ? 2 : 1;
    t.shape[0] = a;
    t.shape[1] = b;
    const int64_t n = a * (b ? b : 1);
    t.data = dalloc((size_t)n * dalle_dtype_size(t.dtype));
    fill(t.data, n, t.dtype, scale);
    if (bytes) *bytes += (size_t)n * dalle_dtype_size(t.dtype);
    return t;
}
static dalle_tensor W4(int64_t o, int k, int64_t i, float scale) {
    dalle_tensor t = W(o, (int64_t)k * k * i, scale, NULL);
    t.ndim = 4;
    t.shape[1] = k, t.shape[2] = k, t.shape[3] = i;
    return t;
}
static float *act(int64_t n) {
    float *p = dalloc((size_t)n * 4);
    fill(p, n, DALLE_F32, 1.0f);
    return p;
}

typedef struct {
    dalle_tensor ln[6], q, k, v, o, cq, co, fc0, fc1, fc2;
} layer_w;

typedef struct {
    const char *name;
    int d, layers, heads, F, V, text_len, cap;
} bart_size;

/* One decode step of B images; returns ms per step over `reps` timed steps. */
static double decode_step_ms(const bart_size *z, int B, int reps, size_t *weight_bytes) {
    const int d = z->d, F = z->F, rows = 2 * B, H = z->heads, D = d / H, cap = z->cap;
    size_t wb = 0;
    layer_w *L = calloc(z->layers, sizeof *L);
    for (int l = 0; l < z->layers; l++) {
        for (int i = 0; i < 5; i++) L[l].ln[i] = W(d, 0, 1, &wb);
        L[l].ln[5] = W(F, 0, 1, &wb);
        L[l].q = W(d, d, 0.03f, &wb), L[l].k = W(d, d, 0.03f, &wb), L[l].v = W(d, d, 0.03f, &wb);
        L[l].o = W(d, d, 0.03f, &wb), L[l].cq = W(d, d, 0.03f, &wb), L[l].co = W(d, d, 0.03f, &wb);
        L[l].fc0 = W(F, d, 0.03f, &wb), L[l].fc1 = W(F, d, 0.03f, &wb), L[l].fc2 = W(d, F, 0.02f, &wb);
    }
    dalle_tensor fin = W(d, 0, 1, &wb), head = W(z->V, d, 0.03f, &wb);
    dalle_tensor emb = W(z->V + 1, d, 1, NULL), pos = W(cap, d, 1, NULL);
    /* caches: self K/V per layer [rows, cap, d]; cross K/V per layer [B prompts… here 1 per
     * image pair → rows blocks of text_len] */
    float **sk = calloc(z->layers, sizeof *sk), **sv = calloc(z->layers, sizeof *sv);
    float **ck = calloc(z->layers, sizeof *ck), **cv = calloc(z->layers, sizeof *cv);
    for (int l = 0; l < z->layers; l++) {
        sk[l] = act((int64_t)rows * cap * d), sv[l] = act((int64_t)rows * cap * d);
        ck[l] = act((int64_t)rows * z->text_len * d), cv[l] = act((int64_t)rows * z->text_len * d);
    }
    float *x = act((int64_t)rows * d), *h = act((int64_t)rows * d), *q = act((int64_t)rows * d);
    float *kk = act((int64_t)rows * d), *vv = act((int64_t)rows * d), *a = act((int64_t)rows * d);
    float *g0 = act((int64_t)rows * F), *g1 = act((int64_t)rows * F);
    float *logits = act((int64_t)rows * z->V);
    int32_t *ids = malloc(rows * 4), *pp = malloc(rows * 4), *slot = malloc(rows * 4);
    int32_t *cpos = malloc(rows * 4), *step = malloc(B * 4), *tok = malloc(B * 4);
    uint8_t *tmask = malloc((size_t)rows * z->text_len);
    memset(tmask, 1, (size_t)rows * z->text_len);
    dalle_sample_params *sp = malloc(B * sizeof *sp);
    const int t = 128;
    for (int r = 0; r < rows; r++) ids[r] = r % z->V, pp[r] = t, slot[r] = r, cpos[r] = t;
    for (int b = 0; b < B; b++) {
        step[b] = t;
        sp[b] = (dalle_sample_params){10.0f, 1.0f, 1.0f, 50, 7, (uint32_t)b};
    }
    double best = 1e30;
    for (int rep = 0; rep < reps + 2; rep++) {
        be->ops->sync(be);
        const double t0 = now_ms();
        be->ops->embed(be, x, &emb, ids, &pos, pp, rows, d);
        for (int l = 0; l < z->layers; l++) {
            layer_w *w = &L[l];
            be->ops->layernorm(be, h, x, &w->ln[0], NULL, rows, d, 1e-5f);
            be->ops->matmul(be, q, h, &w->q, rows, d, d, 0);
            be->ops->matmul(be, kk, h, &w->k, rows, d, d, 0);
            be->ops->matmul(be, vv, h, &w->v, rows, d, d, 0);
            be->ops->kv_store(be, sk[l], kk, slot, pp, rows, 1, d, cap);
            be->ops->kv_store(be, sv[l], vv, slot, pp, rows, 1, d, cap);
            be->ops->attention(be, a, q, sk[l], sv[l], NULL, NULL, cpos, rows, 1, t + 1, cap, H, D);
            be->ops->matmul(be, h, a, &w->o, rows, d, d, 0);
            be->ops->layernorm(be, h, h, &w->ln[1], NULL, rows, d, 1e-5f);
            be->ops->add(be, x, h, (int64_t)rows * d);
            be->ops->layernorm(be, h, x, &w->ln[2], NULL, rows, d, 1e-5f);
            be->ops->matmul(be, q, h, &w->cq, rows, d, d, 0);
            be->ops->attention(be, a, q, ck[l], cv[l], NULL, tmask, NULL, rows, 1, z->text_len,
                               z->text_len, H, D);
            be->ops->matmul(be, h, a, &w->co, rows, d, d, 0);
            be->ops->layernorm(be, h, h, &w->ln[3], NULL, rows, d, 1e-5f);
            be->ops->add(be, x, h, (int64_t)rows * d);
            be->ops->layernorm(be, h, x, &w->ln[4], NULL, rows, d, 1e-5f);
            be->ops->matmul(be, g0, h, &w->fc0, rows, F, d, 0);
            be->ops->matmul(be, g1, h, &w->fc1, rows, F, d, 0);
            be->ops->gelu_mul(be, g0, g0, g1, (int64_t)rows * F);
            be->ops->layernorm(be, g0, g0, &w->ln[5], NULL, rows, F, 1e-5f);
            be->ops->matmul(be, x, g0, &w->fc2, rows, d, F, 1);
        }
        be->ops->layernorm(be, h, x, &fin, NULL, rows, d, 1e-5f);
        be->ops->matmul(be, logits, h, &head, rows, z->V, d, 0);
        be->ops->sample(be, tok, logits, B, z->V, z->V, sp, step); /* syncs */
        const double ms = now_ms() - t0;
        if (rep >= 2 && ms < best) best = ms;
    }
    for (int l = 0; l < z->layers; l++) {
        for (int i = 0; i < 6; i++) be->ops->free(be, L[l].ln[i].data);
        dalle_tensor *ws[] = {&L[l].q, &L[l].k, &L[l].v, &L[l].o, &L[l].cq, &L[l].co, &L[l].fc0, &L[l].fc1, &L[l].fc2};
        for (int i = 0; i < 9; i++) be->ops->free(be, ws[i]->data);
        be->ops->free(be, sk[l]), be->ops->free(be, sv[l]), be->ops->free(be, ck[l]), be->ops->free(be, cv[l]);
    }
    be->ops->free(be, fin.data), be->ops->free(be, head.data), be->ops->free(be, emb.data), be->ops->free(be, pos.data);
    float *fl[] = {x, h, q, kk, vv, a, g0, g1, logits};
    for (int i = 0; i < 9; i++) be->ops->free(be, fl[i]);
    free(L), free(sk), free(sv), free(ck), free(cv), free(ids), free(pp), free(slot), free(cpos);
    free(step), free(tok), free(tmask), free(sp);
    *weight_bytes = wb;
    return best;
}

/* ---- VQGAN decoder (taming f16: z 256, ch 128, ch_mult 1,1,2,2,4, 2 res blocks + 1) ---- */
static float *vbuf[3];
static double vq_ms, vq_conv_ms; /* device time of the ops alone (weights are made untimed) */

/* Runs one op between two syncs and adds its time to vq_ms. */
#define TIMED(stmt)                                                                           \
    do {                                                                                      \
        be->ops->sync(be);                                                                    \
        const double t0_ = now_ms();                                                          \
        stmt;                                                                                 \
        be->ops->sync(be);                                                                    \
        vq_ms += now_ms() - t0_;                                                              \
    } while (0)

static void gn(float *y, const float *x, int HW, int C, int swish) {
    dalle_tensor g = W(C, 0, 1, NULL), b = W(C, 0, 0.1f, NULL);
    TIMED(be->ops->group_norm(be, y, x, &g, &b, 1, HW, C, 32, 1e-6f, swish));
    be->ops->free(be, g.data), be->ops->free(be, b.data);
}
static void conv(float *y, const float *x, int S, int cin, int cout, int k) {
    dalle_tensor w = W4(cout, k, cin, 0.02f), b = W(cout, 0, 0.01f, NULL);
    const double before = vq_ms;
    TIMED(be->ops->conv2d(be, y, x, &w, &b, 1, S, S, cin, cout, k));
    vq_conv_ms += vq_ms - before;
    be->ops->free(be, w.data), be->ops->free(be, b.data);
}
/* x (vbuf[0]) ← resblock(x): cin → cout at S×S; uses vbuf[1], vbuf[2] */
static void resblock(int S, int cin, int cout) {
    float *x = vbuf[0], *t = vbuf[1], *u = vbuf[2];
    gn(t, x, S * S, cin, 1);
    conv(u, t, S, cin, cout, 3);
    gn(u, u, S * S, cout, 1);
    conv(t, u, S, cout, cout, 3);
    if (cin != cout) {
        conv(u, x, S, cin, cout, 1);
        TIMED(be->ops->add(be, t, u, (int64_t)S * S * cout));
    } else {
        TIMED(be->ops->add(be, t, x, (int64_t)S * S * cout));
    }
    vbuf[0] = t, vbuf[1] = x; /* swap: the result becomes x */
}
static void attnblock(int S, int C) {
    float *x = vbuf[0], *t = vbuf[1], *u = vbuf[2];
    const int64_t n = (int64_t)S * S * C;
    float *q = dalloc(n * 4), *k = dalloc(n * 4), *v = dalloc(n * 4);
    gn(t, x, S * S, C, 0);
    conv(q, t, S, C, C, 1), conv(k, t, S, C, C, 1), conv(v, t, S, C, C, 1);
    TIMED(be->ops->attention(be, u, q, k, v, NULL, NULL, NULL, 1, S * S, S * S, S * S, 1, C));
    conv(t, u, S, C, C, 1);
    TIMED(be->ops->add(be, x, t, n));
    be->ops->free(be, q), be->ops->free(be, k), be->ops->free(be, v);
}
static void vqgan_layers(void) {
    static const int mult[5] = {1, 1, 2, 2, 4};
    const int ch = 128;
    int S = 16, C = ch * mult[4];
    conv(vbuf[1], vbuf[0], S, 256, C, 3);
    float *t = vbuf[0];
    vbuf[0] = vbuf[1], vbuf[1] = t;
    resblock(S, C, C), attnblock(S, C), resblock(S, C, C);
    for (int lvl = 4; lvl >= 0; lvl--) {
        const int co = ch * mult[lvl];
        for (int r = 0; r < 3; r++) {
            resblock(S, C, co);
            C = co;
            if (S == 16) attnblock(S, C);
        }
        if (lvl > 0) {
            TIMED(be->ops->upsample2x(be, vbuf[1], vbuf[0], 1, S, S, C));
            S *= 2;
            conv(vbuf[2], vbuf[1], S, C, C, 3);
            t = vbuf[0];
            vbuf[0] = vbuf[2], vbuf[2] = t;
        }
    }
    gn(vbuf[1], vbuf[0], S * S, C, 1);
    conv(vbuf[2], vbuf[1], S, C, 3, 3);
}
static double vqgan_ms(double *conv_ms) {
    const int64_t n = (int64_t)256 * 256 * 256; /* the largest map: 256² × 256 channels bound */
    for (int i = 0; i < 3; i++) vbuf[i] = act(n);
    double best = 1e30, best_conv = 0;
    for (int rep = 0; rep < 3; rep++) {
        vq_ms = vq_conv_ms = 0;
        vqgan_layers();
        const double ms = vq_ms;
        if (rep >= 1 && ms < best) best = ms, best_conv = vq_conv_ms;
    }
    for (int i = 0; i < 3; i++) be->ops->free(be, vbuf[i]);
    *conv_ms = best_conv;
    return best;
}

static dalle_backend *new_backend(dalle_dtype dt, dalle_error *err) {
    return use_cpu ? dalle_backend_cpu_new(0) : dalle_backend_cuda_new(0, dt, err);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--cpu")) use_cpu = 1;
        else {
            fprintf(stderr, "usage: gpu_bench [--quick] [--cpu]\n");
            return 2;
        }
    }
    static const bart_size sizes[2] = {
        {"mini", 1024, 12, 16, 2730, 16384, 64, 256},
        {"mega", 2048, 24, 32, 4096, 16384, 64, 256},
    };
    static const int batches[3] = {1, 8, 16};
    static const dalle_dtype dts[2] = {DALLE_F32, DALLE_F16};
    const double peak = 3.35e12;
    dalle_error err = {0};
    printf("gpu_bench: %s, decode step (min over timed steps, after 2 warm-up steps)\n",
           use_cpu ? "CPU backend (--cpu dry run)" : "CUDA backend");
    printf("| model | weights | images | step ms | ms/image/step | weight GB | GB/s | %% of 3.35 TB/s |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < (quick ? 1 : 2); si++)
        for (int di = 0; di < (use_cpu ? 1 : 2); di++) {
            be = new_backend(dts[di], &err);
            if (!be) {
                printf("gpu_bench: skipped: %s\n", err.msg);
                return 2;
            }
            for (int bi = 0; bi < (quick ? 1 : 3); bi++) {
                size_t wb = 0;
                const double ms = decode_step_ms(&sizes[si], batches[bi], quick ? 3 : 10, &wb);
                const double gbs = wb / (ms / 1e3) / 1e9;
                printf("| %s | %s | %d | %.3f | %.3f | %.2f | %.0f | %.1f |\n", sizes[si].name,
                       dalle_dtype_name(dts[di]), batches[bi], ms, ms / batches[bi], wb / 1e9, gbs,
                       100 * gbs * 1e9 / peak);
                fflush(stdout);
            }
            be->ops->destroy(be);
        }
    printf("\ngpu_bench: VQGAN decoder, one 16×16 code grid → 256×256 (random weights)\n");
    printf("(sum of op times, each op between syncs; weights made untimed)\n");
    printf("| weights | image ms | of which conv2d ms |\n|---|---|---|\n");
    for (int di = 0; di < (use_cpu ? 1 : 2); di++) {
        be = new_backend(dts[di], &err);
        if (!be) return 2;
        double conv_ms;
        const double ms = vqgan_ms(&conv_ms);
        printf("| %s | %.2f | %.2f |\n", dalle_dtype_name(dts[di]), ms, conv_ms);
        be->ops->destroy(be);
    }
    return 0;
}
