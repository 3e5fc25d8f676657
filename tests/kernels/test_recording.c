/* test_recording.c — model/bart.c's recorded decode step (ops.h graph_*), checked on the CPU.
 *
 * A recording CPU backend stands in for CUDA graphs with the same semantics: between
 * graph_begin and graph_end the recordable ops (embed_dev, layernorm, matmul,
 * decode_attention, cross_attention, add, gelu_mul) are stored with their arguments instead
 * of run; graph_launch replays them, so they read whatever the device-index arrays hold at
 * launch; any other op while recording marks the recording failed; a handle goes stale when
 * the test bumps the "scratch generation". The tiny model's decoder then runs a schedule
 * of steps where images join and leave (2, 6, 4, 8 rows: power-of-two buckets with padding
 * rows) on this backend and, eagerly, on the plain CPU backend, with the same tokens; the
 * logits of the real rows must agree (1e-5: a padded bucket may take another GEMM path) and
 * the greedy tokens must be equal. Also checked: steps were recorded and replayed, a stale
 * handle is recorded again, and the padding rows never touch the real rows' KV cache.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/bart.h"
#include "model_loader/model_config.h"
#include "tests/helpers.h"

#define MODEL_DIR "models/tiny"

/* ---- the recording backend ---- */

typedef enum { R_EMBED, R_LN, R_MATMUL, R_DECATT, R_CROSS, R_ADD, R_GELU } rec_op;
typedef struct {
    rec_op op;
    const void *p[8];
    const dalle_tensor *t[3];
    int i[8];
    float f;
    int64_t n;
} rec;
typedef struct {
    rec *v;
    int n, cap;
    unsigned generation;
} rec_graph;

static struct {
    dalle_backend *cpu;
    dalle_backend_ops ops;
    rec_graph *cur;
    int recording, failed, recordings, launches, stale;
    unsigned generation;
} R;
static dalle_backend wrap;

static const dalle_backend_ops *cpu_ops(void) {
    return R.cpu->ops;
}

static int record(rec r) {
    if (!R.recording)
        return 0;
    if (R.cur->n == R.cur->cap) {
        R.cur->cap = R.cur->cap ? 2 * R.cur->cap : 256;
        R.cur->v = realloc(R.cur->v, (size_t)R.cur->cap * sizeof *R.cur->v);
        cr_assert_not_null(R.cur->v);
    }
    R.cur->v[R.cur->n++] = r;
    return 1;
}

static void w_embed_dev(dalle_backend *be, float *y, const dalle_tensor *t, const int32_t *ids,
                        const dalle_tensor *pt, const int32_t *pos, int rows, int C) {
    (void)be;
    if (!record((rec){R_EMBED, {y, ids, pos}, {t, pt}, {rows, C}, 0, 0}))
        cpu_ops()->embed_dev(R.cpu, y, t, ids, pt, pos, rows, C);
}
static void w_layernorm(dalle_backend *be, float *y, const float *x, const dalle_tensor *g,
                        const dalle_tensor *b, int rows, int C, float eps) {
    (void)be;
    if (!record((rec){R_LN, {y, x}, {g, b}, {rows, C}, eps, 0}))
        cpu_ops()->layernorm(R.cpu, y, x, g, b, rows, C, eps);
}
static void w_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                     int N, int K, int acc) {
    (void)be;
    if (!record((rec){R_MATMUL, {y, x}, {w}, {M, N, K, acc}, 0, 0}))
        cpu_ops()->matmul(R.cpu, y, x, w, M, N, K, acc);
}
static void w_decatt(dalle_backend *be, float *out, const float *q, const float *k, const float *v,
                     void *kc, void *vc, const int32_t *slot, const int32_t *pos, int B, int cap,
                     int H, int D) {
    (void)be;
    if (!record((rec){R_DECATT, {out, q, k, v, kc, vc, slot, pos}, {0}, {B, cap, H, D}, 0, 0}))
        cpu_ops()->decode_attention(R.cpu, out, q, k, v, kc, vc, slot, pos, B, cap, H, D);
}
static void w_cross(dalle_backend *be, float *out, const float *q, const float *k, const float *v,
                    const int32_t *block, const uint8_t *mask, int B, int T, int H, int D) {
    (void)be;
    if (!record((rec){R_CROSS, {out, q, k, v, block, mask}, {0}, {B, T, H, D}, 0, 0}))
        cpu_ops()->cross_attention(R.cpu, out, q, k, v, block, mask, B, T, H, D);
}
static void w_add(dalle_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    if (!record((rec){R_ADD, {y, x}, {0}, {0}, 0, n}))
        cpu_ops()->add(R.cpu, y, x, n);
}
static void w_gelu(dalle_backend *be, float *y, const float *a, const float *b, int64_t n) {
    (void)be;
    if (!record((rec){R_GELU, {y, a, b}, {0}, {0}, 0, n}))
        cpu_ops()->gelu_mul(R.cpu, y, a, b, n);
}

/* not recordable: fail a recording, else run */
static void w_to_device(dalle_backend *be, void *d, const void *s, size_t n) {
    (void)be;
    if (R.recording)
        R.failed = 1;
    else
        cpu_ops()->to_device(R.cpu, d, s, n);
}
static void w_sample(dalle_backend *be, int32_t *tok, const float *l, int B, int V, int ld,
                     const dalle_sample_params *p, const int32_t *step) {
    (void)be;
    if (R.recording)
        R.failed = 1;
    else
        cpu_ops()->sample(R.cpu, tok, l, B, V, ld, p, step);
}

static void replay(const rec *r) {
    dalle_backend *c = R.cpu;
    const dalle_backend_ops *o = cpu_ops();
    switch (r->op) {
    case R_EMBED:
        o->embed_dev(c, (float *)r->p[0], r->t[0], r->p[1], r->t[1], r->p[2], r->i[0], r->i[1]);
        break;
    case R_LN:
        o->layernorm(c, (float *)r->p[0], r->p[1], r->t[0], r->t[1], r->i[0], r->i[1], r->f);
        break;
    case R_MATMUL:
        o->matmul(c, (float *)r->p[0], r->p[1], r->t[0], r->i[0], r->i[1], r->i[2], r->i[3]);
        break;
    case R_DECATT:
        o->decode_attention(c, (float *)r->p[0], r->p[1], r->p[2], r->p[3], (void *)r->p[4],
                            (void *)r->p[5], r->p[6], r->p[7], r->i[0], r->i[1], r->i[2], r->i[3]);
        break;
    case R_CROSS:
        o->cross_attention(c, (float *)r->p[0], r->p[1], r->p[2], r->p[3], r->p[4], r->p[5],
                           r->i[0], r->i[1], r->i[2], r->i[3]);
        break;
    case R_ADD: o->add(c, (float *)r->p[0], r->p[1], r->n); break;
    case R_GELU: o->gelu_mul(c, (float *)r->p[0], r->p[1], r->p[2], r->n); break;
    }
}

static int w_graph_begin(dalle_backend *be) {
    (void)be;
    cr_assert(!R.recording);
    R.cur = calloc(1, sizeof *R.cur);
    R.recording = 1;
    R.failed = 0;
    return 1;
}
static void *w_graph_end(dalle_backend *be) {
    (void)be;
    R.recording = 0;
    rec_graph *g = R.cur;
    R.cur = NULL;
    if (R.failed) {
        free(g->v);
        free(g);
        return NULL;
    }
    g->generation = R.generation;
    R.recordings++;
    return g;
}
static int w_graph_launch(dalle_backend *be, void *graph) {
    (void)be;
    rec_graph *g = graph;
    if (g->generation != R.generation) {
        R.stale++;
        return 0;
    }
    for (int i = 0; i < g->n; i++)
        replay(&g->v[i]);
    R.launches++;
    return 1;
}
static void w_graph_free(dalle_backend *be, void *graph) {
    (void)be;
    rec_graph *g = graph;
    free(g->v);
    free(g);
}

static dalle_backend *recording_backend(void) {
    R.cpu = dalle_backend_cpu_new(1);
    cr_assert_not_null(R.cpu);
    R.ops = *R.cpu->ops; /* the CPU ops run with wrap: its impl is the CPU backend's */
    R.ops.name = "cpu-recording";
    R.ops.embed_dev = w_embed_dev;
    R.ops.layernorm = w_layernorm;
    R.ops.matmul = w_matmul;
    R.ops.decode_attention = w_decatt;
    R.ops.cross_attention = w_cross;
    R.ops.add = w_add;
    R.ops.gelu_mul = w_gelu;
    R.ops.to_device = w_to_device;
    R.ops.sample = w_sample;
    R.ops.graph_begin = w_graph_begin;
    R.ops.graph_end = w_graph_end;
    R.ops.graph_launch = w_graph_launch;
    R.ops.graph_free = w_graph_free;
    wrap.ops = &R.ops;
    wrap.impl = R.cpu->impl;
    return &wrap;
}

/* ---- the test ---- */

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

Test(recording, bart_recorded_steps_match_eager, .timeout = 300) {
    dalle_error err = {0};
    dalle_model_config cfg;
    cr_assert_eq(dalle_model_config_load(&cfg, MODEL_DIR, &err), DALLE_OK, "%s", err.msg);
    const dalle_bart_hparams *hp = &cfg.bart;
    const int T = hp->text_length, C = hp->d_model, V = hp->image_vocab_size;
    dalle_backend *be[2] = {dalle_backend_cpu_new(1), recording_backend()};
    dalle_bart m[2];
    dalle_bart_work w[2];
    float *enc[2];
    const int max_images = 4;
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(dalle_bart_load(&m[s], be[s], hp, MODEL_DIR "/encoder.safetensors",
                                     MODEL_DIR "/decoder.safetensors", &err),
                     DALLE_OK, "%s", err.msg);
        cr_assert_eq(dalle_bart_work_new(&w[s], &m[s], be[s], 1, 2 * max_images, 3, &err), DALLE_OK,
                     "%s", err.msg);
        enc[s] = be[s]->ops->alloc(be[s], (size_t)T * C * sizeof(float));
        /* block 0: the unconditional prompt; blocks 1, 2: two prompts */
        for (int b = 0; b < 3; b++) {
            int32_t ids[256];
            uint8_t mask[256];
            cr_assert(T <= 256);
            for (int i = 0; i < T; i++) {
                const int len = b == 0 ? 2 : 5 + 4 * b;
                ids[i] = i < len ? (i * 31 + 7 * b + 3) % hp->text_vocab_size : 1;
                mask[i] = i < len;
            }
            dalle_bart_encode(&m[s], &w[s], ids, mask, 1, enc[s]);
            dalle_bart_cross_kv(&m[s], &w[s], enc[s], mask, b);
        }
    }
    /* images per step: joins and leaves; image k uses slots 2k (cond), 2k+1 (uncond) */
    static const int live[][4] = {{1, 0, 0, 0}, {1, 1, 1, 0}, {0, 1, 0, 1}, {1, 1, 1, 1}};
    int pos[4] = {0}, token[4];
    for (int k = 0; k < 4; k++)
        token[k] = hp->start_token;
    double worst = 0;
    int steps = 0, mismatches = 0;
    for (int phase = 0; phase < 4; phase++)
        for (int rep = 0; rep < 5; rep++, steps++) {
            if (phase == 2 && rep == 2)
                R.generation++; /* a scratch buffer "moved" */
            int32_t tk[8], ps[8], sl[8], bl[8], img[4];
            int n = 0;
            for (int k = 0; k < 4; k++) {
                if (!live[phase][k])
                    continue;
                img[n] = k;
                for (int c = 0; c < 2; c++) {
                    tk[2 * n + c] = token[k], ps[2 * n + c] = pos[k];
                    sl[2 * n + c] = 2 * k + c, bl[2 * n + c] = c == 0 ? 1 + k % 2 : 0;
                }
                n++;
            }
            for (int s = 0; s < 2; s++)
                dalle_bart_decode_step(&m[s], &w[s], tk, ps, sl, bl, 2 * n, V);
            worst = fmax(worst, max_rel_err(w[1].logits, w[0].logits, (size_t)2 * n * V));
            for (int i = 0; i < n; i++) {
                const int k = img[i];
                const int t0 = argmax(w[0].logits + (size_t)2 * i * V, V);
                mismatches += t0 != argmax(w[1].logits + (size_t)2 * i * V, V);
                token[k] = t0;
                pos[k]++;
            }
        }
    cr_log_info("recording: %d steps, %d recordings, %d replays, %d stale, max rel %.3e", steps,
                R.recordings, R.launches, R.stale, worst);
    cr_expect_leq(worst, 1e-5, "recorded steps differ from eager: %.3e", worst);
    cr_expect_eq(mismatches, 0, "%d greedy tokens differ", mismatches);
    /* buckets 2, 8 (6 rows padded), 4, 8: each records after one eager step; the stale
     * handle of bucket 4 records again */
    cr_expect_geq(R.recordings, 4, "%d recordings", R.recordings);
    cr_expect_geq(R.launches, steps - 10, "%d replays of %d steps", R.launches, steps);
    cr_expect_geq(R.stale, 1);
    cr_expect_eq(w[1].no_graph, 0);
    for (int s = 0; s < 2; s++) {
        be[s]->ops->free(be[s], enc[s]);
        dalle_bart_work_free(&w[s]);
        dalle_bart_free(&m[s]);
    }
    be[0]->ops->destroy(be[0]);
    R.cpu->ops->destroy(R.cpu);
    dalle_model_config_free(&cfg);
}
