/* gpu_bench.c — timings of the CUDA backend with random weights made on the device (nothing
 * stored): one DalleBart decode step at DALL·E mini and Mega sizes for 1, 8 and 16 images
 * (2 decoder rows each: conditional + unconditional), fp32 and fp16 weights, and one
 * VQGAN decode of a 16×16 code grid to 256×256 pixels (taming-transformers f16 decoder
 * layout). Printed as a table; the decode rows give the weight bytes streamed per step and
 * the bandwidth that achieves (peak ≈ 3.35 TB/s HBM3 on an H100 SXM).
 *
 *   gpu_bench [--quick] [--cpu] [--e2e FILE [--sizes mini,mega] [--batches 1,8,32,64]
 *             [--steps N]]
 *   --quick: mini only, 3 timed steps, batch 1 (a smoke test);
 *   --cpu: the same op sequences on the CPU backend, fp32 (a dry run of this program on a
 *   machine without a GPU: every op's argument checks run; timings are the CPU's).
 *   --e2e FILE: instead of the tables, whole generations through model/bart.c with random
 *   weights (f16 weights and KV cache on CUDA — DALLE_CUDA_WEIGHTS / DALLE_CUDA_KV
 *   override —, recorded decode steps unless DALLE_CUDA_GRAPHS=0): per size and batch,
 *   encoder + cross K/V for the prompt and the unconditional prompt, N decode steps (256;
 *   fewer with --steps, then scaled to 256) each with guided top-k 256 sampling and the
 *   tokens kept on the device, and the VQGAN op sequence per image; one JSON line per
 *   (size, batch) appended to FILE for bench/gpu/compare.py.
 *   --model DIR: a model directory through the engine's job API (dalle.h) on the device —
 *   decode steps, then dalle_job_finish (VQGAN, CLIP, ranked pixels) — per batch of
 *   --batches, with the device→host copies and syncs of each part.
 *
 * The decode step is the shipped one: model/bart.c's dalle_bart_decode_step (recorded unless
 * DALLE_CUDA_GRAPHS=0) and the backend's sample_dev, the tokens kept on the device as
 * model/generate.c keeps them, timed at steps 118..127 (self-attention over ~128 cached keys,
 * cross-attention over 64 text keys). Exit 0, or 2 without a CUDA device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda.h"
#include "model/bart.h"

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
    if (bytes)
        *bytes += (size_t)n * dalle_dtype_size(t.dtype);
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
    const char *name;
    int d, layers, heads, F, V, text_len, cap;
} bart_size;

/* ---- VQGAN decoder (taming f16: z 256, ch 128, ch_mult 1,1,2,2,4, 2 res blocks + 1) ---- */
static float *vbuf[3];
static double vq_ms, vq_conv_ms; /* device time of the ops alone (weights are made untimed) */

/* Runs one op between two syncs and adds its time to vq_ms. */
#define TIMED(stmt)                                                                                \
    do {                                                                                           \
        be->ops->sync(be);                                                                         \
        const double t0_ = now_ms();                                                               \
        stmt;                                                                                      \
        be->ops->sync(be);                                                                         \
        vq_ms += now_ms() - t0_;                                                                   \
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
/* GroupNorm + swish then a k×k conv: one fused op (conv2d_gn) when the backend has it */
static void gn_conv(float *y, const float *x, float *tmp, int S, int cin, int cout, int k) {
    if (!be->ops->conv2d_gn) {
        gn(tmp, x, S * S, cin, 1);
        conv(y, tmp, S, cin, cout, k);
        return;
    }
    dalle_tensor g = W(cin, 0, 1, NULL), b = W(cin, 0, 0.1f, NULL);
    dalle_tensor w = W4(cout, k, cin, 0.02f), bias = W(cout, 0, 0.01f, NULL);
    const double before = vq_ms;
    TIMED(be->ops->conv2d_gn(be, y, x, &g, &b, 32, 1e-6f, 1, &w, &bias, 1, S, S, cin, cout, k));
    vq_conv_ms += vq_ms - before;
    be->ops->free(be, g.data), be->ops->free(be, b.data);
    be->ops->free(be, w.data), be->ops->free(be, bias.data);
}

/* x (vbuf[0]) ← resblock(x): cin → cout at S×S; uses vbuf[1], vbuf[2] */
static void resblock(int S, int cin, int cout) {
    float *x = vbuf[0], *t = vbuf[1], *u = vbuf[2];
    gn_conv(u, x, t, S, cin, cout, 3);
    gn_conv(t, u, u, S, cout, cout, 3);
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
            if (S == 16)
                attnblock(S, C);
        }
        if (lvl > 0 && be->ops->conv2d_up2x) { /* the upsample folded into the conv */
            S *= 2;
            dalle_tensor w = W4(C, 3, C, 0.02f), b = W(C, 0, 0.01f, NULL);
            const double before = vq_ms;
            TIMED(be->ops->conv2d_up2x(be, vbuf[2], vbuf[0], &w, &b, 1, S, S, C, C, 3));
            vq_conv_ms += vq_ms - before;
            be->ops->free(be, w.data), be->ops->free(be, b.data);
            t = vbuf[0];
            vbuf[0] = vbuf[2], vbuf[2] = t;
        } else if (lvl > 0) {
            TIMED(be->ops->upsample2x(be, vbuf[1], vbuf[0], 1, S, S, C));
            S *= 2;
            conv(vbuf[2], vbuf[1], S, C, C, 3);
            t = vbuf[0];
            vbuf[0] = vbuf[2], vbuf[2] = t;
        }
    }
    gn_conv(vbuf[2], vbuf[0], vbuf[1], S, C, 3, 3);
}
static double vqgan_ms(double *conv_ms) {
    const int64_t n = (int64_t)256 * 256 * 256; /* the largest map: 256² × 256 channels bound */
    for (int i = 0; i < 3; i++)
        vbuf[i] = act(n);
    double best = 1e30, best_conv = 0;
    for (int rep = 0; rep < 3; rep++) {
        vq_ms = vq_conv_ms = 0;
        vqgan_layers();
        const double ms = vq_ms;
        if (rep >= 1 && ms < best)
            best = ms, best_conv = vq_conv_ms;
    }
    for (int i = 0; i < 3; i++)
        be->ops->free(be, vbuf[i]);
    *conv_ms = best_conv;
    return best;
}

/* ---- whole generations through model/bart.c (--e2e) ------------------------------ */

static dalle_backend *new_backend(dalle_dtype dt, dalle_error *err);

/* A DalleBart of size z with random weights made on the device. */
static void rand_stack(dalle_bart_stack *S, const bart_size *z, int vocab, int P, int n_layers,
                       int decoder) {
    const int d = z->d, F = z->F;
    S->embed = W(vocab, d, 1, NULL);
    S->pos = W(P, d, 1, NULL);
    S->emb_ln_g = W(d, 0, 1, NULL), S->emb_ln_b = W(d, 0, 0.1f, NULL);
    S->final_ln_b = W(d, 0, 0.1f, NULL);
    S->n_layers = n_layers;
    S->layers = calloc((size_t)n_layers, sizeof *S->layers);
    for (int l = 0; l < n_layers; l++) {
        dalle_bart_layer *L = &S->layers[l];
        L->pre_self_ln_b = W(d, 0, 0.1f, NULL);
        L->q = W(d, d, 0.03f, NULL), L->k = W(d, d, 0.03f, NULL);
        L->v = W(d, d, 0.03f, NULL), L->o = W(d, d, 0.03f, NULL);
        L->self_ln_g = W(d, 0, 1, NULL), L->self_ln_b = W(d, 0, 0.1f, NULL);
        if (decoder) {
            L->pre_cross_ln_b = W(d, 0, 0.1f, NULL);
            L->cq = W(d, d, 0.03f, NULL), L->ck = W(d, d, 0.03f, NULL);
            L->cv = W(d, d, 0.03f, NULL), L->co = W(d, d, 0.03f, NULL);
            L->cross_ln_g = W(d, 0, 1, NULL), L->cross_ln_b = W(d, 0, 0.1f, NULL);
        }
        L->glu_ln0_b = W(d, 0, 0.1f, NULL);
        L->fc0 = W(F, d, 0.03f, NULL), L->fc1 = W(F, d, 0.03f, NULL);
        L->glu_ln1_b = W(F, 0, 0.1f, NULL);
        L->fc2 = W(d, F, 0.02f, NULL);
    }
}

static void free_t(dalle_tensor *t) {
    if (t->data)
        be->ops->free(be, t->data);
    t->data = NULL;
}

static void free_stack(dalle_bart_stack *S) {
    free_t(&S->embed), free_t(&S->pos), free_t(&S->emb_ln_g), free_t(&S->emb_ln_b);
    free_t(&S->final_ln_b);
    for (int l = 0; l < S->n_layers; l++) {
        dalle_bart_layer *L = &S->layers[l];
        dalle_tensor *ts[] = {&L->pre_self_ln_b,
                              &L->q,
                              &L->k,
                              &L->v,
                              &L->o,
                              &L->self_ln_g,
                              &L->self_ln_b,
                              &L->pre_cross_ln_b,
                              &L->cq,
                              &L->ck,
                              &L->cv,
                              &L->co,
                              &L->cross_ln_g,
                              &L->cross_ln_b,
                              &L->glu_ln0_b,
                              &L->fc0,
                              &L->fc1,
                              &L->glu_ln1_b,
                              &L->fc2};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
            free_t(ts[i]);
    }
    free(S->layers);
}

/* One generation of B images at size z on work w (kept between generations, like a
 * server's state, so recorded steps are reused): returns encode and decode ms (decode
 * scaled to 256 steps). */
static void e2e_generate(const dalle_bart *m, dalle_bart_work *wp, int B, int steps, double *enc_ms,
                         double *dec_ms) {
    const dalle_bart_hparams *hp = &m->hp;
    const int T = hp->text_length, C = hp->d_model, R = 2 * B, V = hp->image_vocab_size;
    dalle_bart_work w = *wp;
    float *enc = dalloc((size_t)T * C * sizeof(float));
    int32_t ids[64], pos[128], slot[128], blk[128], step[64], code_at[64];
    uint8_t mask[64];
    dalle_sample_params sp[64];
    if (T > 64 || B > 64) {
        fprintf(stderr, "gpu_bench: --e2e takes text_length ≤ 64 and batches ≤ 64\n");
        exit(2);
    }
    /* unconditional prompt into block 0 (as at state creation, untimed), the prompt into 1 */
    for (int i = 0; i < T; i++)
        ids[i] = i < 2 ? i : 1, mask[i] = i < 2;
    dalle_bart_encode(m, &w, ids, mask, 1, enc);
    dalle_bart_cross_kv(m, &w, enc, mask, 0);
    be->ops->sync(be);
    double t0 = now_ms();
    for (int i = 0; i < T; i++)
        ids[i] = i < 12 ? 100 + 37 * i : 1, mask[i] = i < 12;
    dalle_bart_encode(m, &w, ids, mask, 1, enc);
    dalle_bart_cross_kv(m, &w, enc, mask, 1);
    be->ops->sync(be);
    *enc_ms = now_ms() - t0;
    for (int b = 0; b < B; b++)
        sp[b] = (dalle_sample_params){10.0f, 1.0f, 1.0f, 256, 7, (uint32_t)b};
    for (int r = 0; r < R; r++) /* the first step's tokens: the start token */
        be->ops->to_device(be, w.step_dev + r, &hp->start_token, sizeof(int32_t));
    t0 = now_ms();
    for (int t = 0; t < steps; t++) {
        for (int b = 0; b < B; b++) {
            step[b] = t, code_at[b] = 2 * b * hp->image_length + t;
            for (int c = 0; c < 2; c++) {
                pos[2 * b + c] = t;
                slot[2 * b + c] = 2 * b + c, blk[2 * b + c] = c == 0 ? 1 : 0;
            }
        }
        dalle_bart_decode_step(m, &w, NULL, pos, slot, blk, R, V);
        be->ops->sample_dev(be, w.step_dev, w.codes_dev, code_at, w.logits, B, V, V, sp, step);
    }
    be->ops->sync(be);
    *dec_ms = (now_ms() - t0) * hp->image_length / steps;
    be->ops->free(be, enc);
    *wp = w;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        while (*s && *s != ',')
            s++;
        if (*s == ',')
            s++;
    }
    return n;
}

/* A DalleBart of size z (si: 0 mini, 1 mega) with random weights made on the device. */
static void rand_bart(dalle_bart *m, const bart_size *z, int si) {
    static const int text_vocab[2] = {50264, 50272}, lm_head[2] = {16385, 16416};
    memset(m, 0, sizeof *m);
    m->hp = (dalle_bart_hparams){.d_model = z->d,
                                 .encoder_layers = z->layers,
                                 .decoder_layers = z->layers,
                                 .heads = z->heads,
                                 .glu_dim = z->F,
                                 .text_vocab_size = text_vocab[si],
                                 .text_length = z->text_len,
                                 .image_vocab_size = z->V,
                                 .image_length = z->cap,
                                 .lm_head_size = lm_head[si],
                                 .start_token = 16384,
                                 .layer_norm_eps = 1e-5f};
    m->be = be;
    rand_stack(&m->enc, z, text_vocab[si], z->text_len, z->layers, 0);
    rand_stack(&m->dec, z, lm_head[si], z->cap, z->layers, 1);
    m->lm_head = W(lm_head[si], z->d, 0.03f, NULL);
}

static void free_bart(dalle_bart *m) {
    free_stack(&m->enc), free_stack(&m->dec), free_t(&m->lm_head);
}

/* Bytes of the weights one decode step streams: the decoder layers and the lm_head rows of
 * the image codes. */
static size_t step_weight_bytes(const dalle_bart *m) {
    const size_t es = dalle_dtype_size(be->ops->weight_dtype), d = (size_t)m->hp.d_model;
    const size_t F = (size_t)m->hp.glu_dim, L = (size_t)m->dec.n_layers;
    return es * (L * (6 * d * d + 3 * d * F) + (size_t)m->hp.image_vocab_size * d);
}

/* One decode step of B images, the shipped one: model/bart.c's dalle_bart_decode_step (recorded
 * in a CUDA graph unless DALLE_CUDA_GRAPHS=0) and the backend's sample_dev, tokens kept on the
 * device as model/generate.c does; steps up to position 128 - reps run untimed, then `reps`
 * steps are timed each to a sync; returns the fastest in ms. */
static double decode_step_ms(const bart_size *z, int si, int B, int reps, size_t *weight_bytes) {
    dalle_bart m;
    rand_bart(&m, z, si);
    dalle_error err = {0};
    dalle_bart_work w;
    if (dalle_bart_work_new(&w, &m, be, 1, 2 * B, 2, &err) != DALLE_OK) {
        fprintf(stderr, "gpu_bench: %s\n", err.msg);
        exit(1);
    }
    const dalle_bart_hparams *hp = &m.hp;
    const int T = hp->text_length, C = hp->d_model, V = hp->image_vocab_size;
    float *enc = dalloc((size_t)T * C * sizeof(float));
    int32_t ids[64], pos[128], slot[128], blk[128], step[64], code_at[64];
    uint8_t mask[64];
    dalle_sample_params sp[64];
    for (int i = 0; i < T; i++)
        ids[i] = i < 12 ? 100 + 37 * i : 1, mask[i] = i < 12;
    dalle_bart_encode(&m, &w, ids, mask, 1, enc);
    dalle_bart_cross_kv(&m, &w, enc, mask, 0);
    dalle_bart_cross_kv(&m, &w, enc, mask, 1);
    for (int r = 0; r < 2 * B; r++) /* the first step's tokens: the start token */
        be->ops->to_device(be, w.step_dev + r, &hp->start_token, sizeof(int32_t));
    double best = 1e30;
    const int timed_from = 128 - reps;
    for (int t = 0; t < 128; t++) {
        for (int b = 0; b < B; b++) {
            step[b] = t, code_at[b] = 2 * b * hp->image_length + t;
            sp[b] = (dalle_sample_params){10.0f, 1.0f, 1.0f, 50, 7, (uint32_t)b};
            for (int c = 0; c < 2; c++)
                pos[2 * b + c] = t, slot[2 * b + c] = 2 * b + c, blk[2 * b + c] = c == 0;
        }
        if (t >= timed_from)
            be->ops->sync(be);
        const double t0 = now_ms();
        dalle_bart_decode_step(&m, &w, NULL, pos, slot, blk, 2 * B, V);
        be->ops->sample_dev(be, w.step_dev, w.codes_dev, code_at, w.logits, B, V, V, sp, step);
        if (t >= timed_from) {
            be->ops->sync(be);
            const double ms = now_ms() - t0;
            best = ms < best ? ms : best;
        }
    }
    *weight_bytes = step_weight_bytes(&m);
    be->ops->free(be, enc);
    dalle_bart_work_free(&w);
    free_bart(&m);
    return best;
}

/* ---- a model directory through the engine (--model) -------------------------------- */

/* Per batch: one job of B images through the public job API on the backend's device —
 * dalle_job_start, image_length decode steps (dalle_state_step), the codes read once
 * (dalle_job_codes: the decode's end), then dalle_job_finish (VQGAN, CLIP, ranked pixels
 * on the host) — with the device→host copies and syncs each part made. */
static int run_model(const char *dir, const char *batches_arg) {
    int batches[16];
    const int nb = parse_list(batches_arg, batches, 16);
    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.backend = use_cpu ? "cpu" : "cuda";
    dalle_error err = {0};
    dalle_model *m = NULL;
    if (dalle_model_load(&m, dir, &mp, &err) != DALLE_OK) {
        printf("gpu_bench: %s: %s\n", dir, err.msg);
        return err.status == DALLE_ERR_BACKEND ? 2 : 1;
    }
    dalle_model_info info;
    dalle_model_get_info(m, &info);
    printf("gpu_bench --model %s: %s backend (%s), %d codes per image\n", dir, info.backend,
           info.kernels, info.image_length);
    printf("| images | decode ms/step | step copies, syncs | finish ms | finish copies, syncs "
           "|\n|---|---|---|---|---|\n");
    for (int bi = 0; bi < nb; bi++) {
        const int B = batches[bi], L = info.image_length, R = info.image_size;
        dalle_state *s = NULL;
        dalle_state_params sp = {.max_images = B, .max_prompts = 1};
        dalle_text t;
        const char *prompt = "a red bicycle leaning against a brick wall";
        if (dalle_state_new(&s, m, &sp, &err) != DALLE_OK ||
            dalle_text_encode(m, prompt, strlen(prompt), &t, &err) != DALLE_OK) {
            printf("gpu_bench: %s\n", err.msg);
            return 1;
        }
        dalle_gen_params p;
        dalle_gen_params_default(m, &p);
        p.n_images = B;
        int32_t *codes = malloc((size_t)B * L * sizeof *codes), *order = malloc(B * sizeof *order);
        float *scores = malloc(B * sizeof *scores);
        uint8_t *rgb = malloc((size_t)B * R * R * 3);
        double dec_ms = 0, fin_ms = 0;
        long c[4], y[4];
        for (int rep = 0; rep < 2; rep++) { /* the first run warms up (graphs, scratch) */
            int job = -1;
            if (dalle_job_start(s, &t, &p, &job, &err) != DALLE_OK || job < 0) {
                printf("gpu_bench: job start: %s\n", err.msg);
                return 1;
            }
            dalle_state_device_counts(s, &c[0], &y[0]);
            const double t0 = now_ms();
            for (int k = 0; k < L; k++)
                dalle_state_step(s);
            dalle_state_device_counts(s, &c[1], &y[1]);
            dalle_job_codes(s, job, codes);
            const double t1 = now_ms();
            dalle_state_device_counts(s, &c[2], &y[2]);
            const dalle_job_output out = {NULL, rgb, order, scores};
            if (info.has_vqgan && dalle_job_finish(s, job, info.has_clip ? t.clip_ids : NULL, &out,
                                                   NULL, &err) != DALLE_OK) {
                printf("gpu_bench: job finish: %s\n", err.msg);
                return 1;
            }
            dalle_state_device_counts(s, &c[3], &y[3]);
            dec_ms = (t1 - t0) / L, fin_ms = now_ms() - t1;
            dalle_job_release(s, job);
        }
        printf("| %d | %.3f | %ld, %ld | %.1f | %ld, %ld |\n", B, dec_ms, c[1] - c[0], y[1] - y[0],
               fin_ms, c[3] - c[2], y[3] - y[2]);
        fflush(stdout);
        free(codes), free(order), free(scores), free(rgb);
        dalle_text_free(&t);
        dalle_state_free(s);
    }
    dalle_model_free(m);
    return 0;
}

static int run_e2e(const char *file, const char *sizes_arg, const char *batches_arg, int steps) {
    static const bart_size sizes[2] = {
        {"mini", 1024, 12, 16, 2730, 16384, 64, 256},
        {"mega", 2048, 24, 32, 4096, 16384, 64, 256},
    };
    int batches[16];
    const int nb = parse_list(batches_arg, batches, 16);
    int wdt = use_cpu ? DALLE_F32 : DALLE_F16;
    const char *wenv = getenv("DALLE_CUDA_WEIGHTS");
    if (!use_cpu && wenv && *wenv)
        wdt = dalle_cuda_weight_dtype_from_env();
    if (wdt < 0) {
        fprintf(stderr, "gpu_bench: bad DALLE_CUDA_WEIGHTS\n");
        return 2;
    }
    dalle_error err = {0};
    be = new_backend((dalle_dtype)wdt, &err);
    if (!be) {
        printf("gpu_bench: skipped: %s\n", err.msg);
        return 2;
    }
    FILE *f = fopen(file, "a");
    if (!f) {
        perror(file);
        return 1;
    }
    double vq_img = 0, vq_conv = 0;
    if (!use_cpu)
        vq_img = vqgan_ms(&vq_conv); /* per image, batch 1 */
    printf("gpu_bench --e2e: %s backend, weights %s, kv %s, VQGAN %.2f ms/image\n", be->ops->name,
           dalle_dtype_name(be->ops->weight_dtype), dalle_dtype_name(be->ops->kv_dtype), vq_img);
    for (int si = 0; si < 2; si++) {
        if (!strstr(sizes_arg, sizes[si].name))
            continue;
        const bart_size *z = &sizes[si];
        dalle_bart m;
        rand_bart(&m, z, si);
        for (int bi = 0; bi < nb; bi++) {
            const int B = batches[bi];
            double enc_ms, dec_ms;
            dalle_bart_work w;
            if (dalle_bart_work_new(&w, &m, be, 1, 2 * B, 2, &err) != DALLE_OK) {
                fprintf(stderr, "gpu_bench: %s\n", err.msg);
                return 1;
            }
            e2e_generate(&m, &w, B, 3, &enc_ms, &dec_ms); /* warm-up: eager, then recording */
            e2e_generate(&m, &w, B, steps, &enc_ms, &dec_ms);
            dalle_bart_work_free(&w);
            const double total = enc_ms + dec_ms + B * vq_img;
            const double ips = B / (total / 1e3);
            printf("| %s | %d | encode %.1f ms | decode %.1f ms (%.3f ms/step) | vqgan %.1f ms | "
                   "%.2f images/s | %.1f ms |\n",
                   z->name, B, enc_ms, dec_ms, dec_ms / z->cap, B * vq_img, ips, total);
            fprintf(f,
                    "{\"impl\": \"ours\", \"model\": \"%s\", \"batch\": %d, \"weights\": \"%s\", "
                    "\"kv\": \"%s\", \"graphs\": %d, \"steps_timed\": %d, \"encode_ms\": %.3f, "
                    "\"decode_ms\": %.3f, \"vqgan_ms\": %.3f, \"total_ms\": %.3f, "
                    "\"images_per_s\": %.4f}\n",
                    z->name, B, dalle_dtype_name(be->ops->weight_dtype),
                    dalle_dtype_name(be->ops->kv_dtype), be->ops->graph_begin != NULL, steps,
                    enc_ms, dec_ms, B * vq_img, total, ips);
            fflush(f);
            fflush(stdout);
        }
        free_bart(&m);
    }
    fclose(f);
    be->ops->destroy(be);
    return 0;
}

static dalle_backend *new_backend(dalle_dtype dt, dalle_error *err) {
    return use_cpu ? dalle_backend_cpu_new(0) : dalle_backend_cuda_new(0, dt, err);
}

int main(int argc, char **argv) {
    int quick = 0, steps = 256;
    const char *e2e = NULL, *model = NULL, *sizes_arg = "mini,mega", *batches_arg = "1,8,32,64";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--cpu"))
            use_cpu = 1;
        else if (!strcmp(argv[i], "--e2e") && i + 1 < argc)
            e2e = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            sizes_arg = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
            batches_arg = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: gpu_bench [--quick] [--cpu] [--e2e FILE [--sizes mini,mega] "
                            "[--batches 1,8,32,64] [--steps N]] [--model DIR [--batches …]]\n");
            return 2;
        }
    }
    if (steps < 1 || steps > 256) {
        fprintf(stderr, "gpu_bench: --steps must be in [1, 256]\n");
        return 2;
    }
    if (e2e)
        return run_e2e(e2e, sizes_arg, batches_arg, steps);
    if (model)
        return run_model(model, batches_arg);
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
    printf("| model | weights | images | step ms | ms/image/step | weight GB | GB/s | %% of 3.35 "
           "TB/s |\n");
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
                const double ms = decode_step_ms(&sizes[si], si, batches[bi], quick ? 3 : 10, &wb);
                const double gbs = wb / (ms / 1e3) / 1e9;
                printf("| %s | %s | %d | %.3f | %.3f | %.2f | %.0f | %.1f |\n", sizes[si].name,
                       dalle_dtype_name(dts[di]), batches[bi], ms, ms / batches[bi], wb / 1e9, gbs,
                       100 * gbs * 1e9 / peak);
                fflush(stdout);
            }
            be->ops->destroy(be);
        }
    printf("\ngpu_bench: VQGAN decoder, one 16×16 code grid → 256×256 (random weights)\n");
    printf(
        "(sum of op times, each op between syncs; weights made untimed; GroupNorm + swish\n"
        "folded into the next conv (conv2d_gn) and the ×2 upsample into the conv (conv2d_up2x))\n");
    printf("| weights | image ms | of which conv2d ms |\n|---|---|---|\n");
    for (int di = 0; di < (use_cpu ? 1 : 2); di++) {
        be = new_backend(dts[di], &err);
        if (!be)
            return 2;
        double conv_ms;
        const double ms = vqgan_ms(&conv_ms);
        printf("| %s | %.2f | %.2f |\n", dalle_dtype_name(dts[di]), ms, conv_ms);
        be->ops->destroy(be);
    }
    return 0;
}
