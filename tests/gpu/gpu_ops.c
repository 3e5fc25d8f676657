/* gpu_ops.c — every CUDA op against the CPU op (the reference backend), over a grid of
 * shapes (odd ones included), fresh random inputs per case, outputs poisoned (NaN) before
 * each run. Not a Criterion test and not named test_…, so make test skips it: `make gpu-test`
 * builds it and tools/gpu/check.sh runs it on a GPU machine.
 *
 *   gpu_ops [--weights f32|f16|bf16] [--seed S] [--cpu-vs-cpu] [--small] [--tiny]
 * --small skips the cases with more than 2^21 output values or 2^27 multiply-adds (for a
 * run under compute-sanitizer, which is 10-100× slower).
 * --tiny runs a grid of the smallest shapes that still reach every kernel and branch (the
 * emulated device, docs/gpu-emulator.md, where every thread is a fiber).
 * --cpu-vs-cpu runs the whole grid with a second CPU backend in place of CUDA (a dry run of
 * this program on a machine without a GPU; fp32 only).
 *
 * Metric (as tests/helpers.h): max relative error = max_i |gpu_i − cpu_i| / max_i |cpu_i|.
 * Tolerances:
 *   - fp32 weights: 1e-5 for every op (cuBLAS SGEMM with TF32 off, double statistics in the
 *     norms like the CPU, the same fp32 formulas elsewhere);
 *   - 16-bit weights: the CPU gets the same weights rounded to 16 bits, so only the GEMMs
 *     differ (the activation operand is rounded too): 1e-2 for matmul and conv2d, 1e-5 for
 *     the rest;
 *   - sampler: token for token, zero mismatches allowed (see kernels/cuda/sample.cu);
 *   - decode_attention (flash-decoding, KV cache in the backend's kv_dtype = the weight
 *     dtype unless DALLE_CUDA_KV says otherwise): 1e-5 with an fp32 cache; with a 16-bit
 *     cache the reference gets the same rounded cache, bound 1e-2; the appended cache
 *     values exact; cross_attention 1e-5; embed_dev 1e-6;
 *   - graph: a recorded mini step (device-index ops + GEMM + LayerNorm) replayed with new
 *     indices each step, vs the CPU eagerly: a chain of six ops with evolving caches, so
 *     1e-4 in fp32 and 1e-2 with 16-bit weights or cache, at every step.
 * Prints one line per case and a summary; exit 0 all passed, 1 any failure, 2 no device
 * ("skipped: no CUDA device").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda.h"
#include "kernels/ops.h"
#include "model/image_prep.h"

static dalle_backend *cpu, *gpu;
static dalle_dtype wdt = DALLE_F32;
static uint64_t rng_state = 1;
static int n_cases, n_failed;
static double worst_by_op[32];
static const char *op_names[32];
static int n_ops;
static int small_only, tiny;

/* --small: skip this case? */
static int skip(double outputs, double work) {
    return small_only && (outputs > (double)(1 << 21) || work > (double)(1 << 27));
}

/* ---- random numbers ---- */
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uni(void) { /* [-1, 1) */
    return (float)((next_u64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *randv(size_t n, float scale, float offset) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++)
        v[i] = uni() * scale + offset;
    return v;
}

/* ---- 16-bit rounding (the CPU reference sees what the GPU weights hold) ---- */
static float round_w(float x) {
    if (wdt == DALLE_F16)
        return (float)(_Float16)x;
    if (wdt == DALLE_BF16) {
        uint32_t u;
        memcpy(&u, &x, 4);
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
        memcpy(&x, &u, 4);
    }
    return x;
}

/* ---- device buffers and weights ---- */
static float *dev_from(const float *h, size_t n) {
    float *d = gpu->ops->alloc(gpu, (n ? n : 1) * sizeof(float));
    if (!d) {
        fprintf(stderr, "gpu_ops: device allocation of %zu floats failed\n", n);
        exit(1);
    }
    if (h)
        gpu->ops->to_device(gpu, d, h, n * sizeof(float));
    return d;
}
static float *dev_poisoned(size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    float *d = dev_from(h, n);
    free(h);
    return d;
}
static float *host_of(const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    gpu->ops->to_host(gpu, h, d, n * sizeof(float));
    return h;
}
static float *poisoned(size_t n) {
    float *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    return h;
}

typedef struct {
    dalle_tensor c, g; /* CPU (fp32) and GPU (weight dtype) copies of the same values */
} wpair;

static wpair weight(int ndim, const int64_t *shape, float scale) {
    wpair w;
    memset(&w, 0, sizeof w);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *v = randv((size_t)n, scale, 0);
    for (int64_t i = 0; i < n; i++)
        v[i] = round_w(v[i]);
    w.c.data = v;
    w.c.dtype = DALLE_F32;
    w.c.ndim = w.g.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        w.c.shape[i] = w.g.shape[i] = shape[i];
    w.g.dtype = wdt;
    const size_t es = dalle_dtype_size(wdt);
    w.g.data = gpu->ops->alloc(gpu, (size_t)n * es);
    if (!w.g.data)
        abort();
    if (wdt == DALLE_F32) {
        gpu->ops->to_device(gpu, w.g.data, v, (size_t)n * 4);
    } else {
        uint16_t *h = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) {
            if (wdt == DALLE_F16) {
                _Float16 f = (_Float16)v[i];
                memcpy(&h[i], &f, 2);
            } else {
                uint32_t u;
                memcpy(&u, &v[i], 4);
                h[i] = (uint16_t)(u >> 16); /* already rounded */
            }
        }
        gpu->ops->to_device(gpu, w.g.data, h, (size_t)n * 2);
        gpu->ops->sync(gpu);
        free(h);
    }
    return w;
}
static wpair weight1(int64_t n, float scale) {
    return weight(1, &n, scale);
}
static void wfree(wpair *w) {
    free(w->c.data);
    gpu->ops->free(gpu, w->g.data);
}

/* ---- comparison ---- */

/* on the emulated device (kernels/cuda/emu/launch.cc): charge a case's error to the kernels
 * it launched, for the make gpu-emu table; absent (NULL) on a real GPU build */
void dalle_emu_attribute(const char *op, double err) __attribute__((weak));
static void emu_note(const char *op, double err) {
    if (dalle_emu_attribute)
        dalle_emu_attribute(op, err);
}

static void check(const char *op, const char *shape, const float *ref, const float *dev_out,
                  size_t n, double tol) {
    float *got = host_of(dev_out, n);
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]);
        if (!(d <= diff))
            diff = d; /* NaN (poison left behind) fails */
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    }
    const double rel = scale > 0 ? diff / scale : diff;
    const int ok = rel <= tol;
    n_cases++;
    if (!ok)
        n_failed++;
    int k = 0;
    while (k < n_ops && strcmp(op_names[k], op) != 0)
        k++;
    if (k == n_ops) {
        op_names[n_ops++] = op;
        worst_by_op[k] = 0;
    }
    if (!(rel <= worst_by_op[k]))
        worst_by_op[k] = rel;
    emu_note(op, rel);
    printf("%-4s %-12s %-44s max_rel %.3e  tol %.0e\n", ok ? "ok" : "FAIL", op, shape, rel, tol);
    free(got);
}

static double gemm_tol(void) {
    return wdt == DALLE_F32 ? 1e-5 : 1e-2;
}

/* ---- ops ---- */
static void t_matmul(int M, int N, int Nw, int K, int acc) {
    if (skip((double)M * N, (double)M * N * K + (double)Nw * K))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "M=%d N=%d/%d K=%d%s", M, N, Nw, K, acc ? " acc" : "");
    const int64_t ws[2] = {Nw, K};
    wpair w = weight(2, ws, 0.5f);
    float *x = randv((size_t)M * K, 1, 0);
    float *y0 = randv((size_t)M * N, 1, 0);
    float *yc = acc ? y0 : poisoned((size_t)M * N);
    float *dx = dev_from(x, (size_t)M * K);
    float *dy = acc ? dev_from(y0, (size_t)M * N) : dev_poisoned((size_t)M * N);
    cpu->ops->matmul(cpu, yc, x, &w.c, M, N, K, acc);
    gpu->ops->matmul(gpu, dy, dx, &w.g, M, N, K, acc);
    check("matmul", sh, yc, dy, (size_t)M * N, gemm_tol());
    if (!acc)
        free(yc);
    free(y0), free(x), wfree(&w);
    gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

static void t_layernorm(int rows, int C, int has_g, int has_b, int inplace) {
    if (skip((double)rows * C, 0))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "rows=%d C=%d%s%s%s", rows, C, has_g ? " g" : "", has_b ? " b" : "",
             inplace ? " inplace" : "");
    wpair g = weight1(C, 1), b = weight1(C, 1);
    float *x = randv((size_t)rows * C, 2, 3.0f);
    float *yc = inplace ? x : poisoned((size_t)rows * C);
    float *dx = dev_from(x, (size_t)rows * C);
    float *dy = inplace ? dx : dev_poisoned((size_t)rows * C);
    cpu->ops->layernorm(cpu, yc, x, has_g ? &g.c : NULL, has_b ? &b.c : NULL, rows, C, 1e-5f);
    gpu->ops->layernorm(gpu, dy, dx, has_g ? &g.g : NULL, has_b ? &b.g : NULL, rows, C, 1e-5f);
    check("layernorm", sh, yc, dy, (size_t)rows * C, 1e-5);
    if (!inplace)
        free(yc), gpu->ops->free(gpu, dy);
    free(x), wfree(&g), wfree(&b), gpu->ops->free(gpu, dx);
}

static void t_embed(int V, int P, int rows, int C, int with_pos) {
    char sh[96];
    snprintf(sh, sizeof sh, "V=%d rows=%d C=%d%s", V, rows, C, with_pos ? " +pos" : "");
    const int64_t ts[2] = {V, C}, ps[2] = {P, C};
    wpair t = weight(2, ts, 1), p = weight(2, ps, 1);
    int32_t *ids = malloc(rows * 4), *pos = malloc(rows * 4);
    for (int r = 0; r < rows; r++)
        ids[r] = (int32_t)(next_u64() % V), pos[r] = (int32_t)(next_u64() % P);
    float *yc = poisoned((size_t)rows * C);
    float *dy = dev_poisoned((size_t)rows * C);
    cpu->ops->embed(cpu, yc, &t.c, ids, with_pos ? &p.c : NULL, pos, rows, C);
    gpu->ops->embed(gpu, dy, &t.g, ids, with_pos ? &p.g : NULL, pos, rows, C);
    check("embed", sh, yc, dy, (size_t)rows * C, 1e-6);
    free(ids), free(pos), free(yc), wfree(&t), wfree(&p), gpu->ops->free(gpu, dy);
}

/* kind: 0 encoder (key mask), 1 decode (causal, kv_index), 2 cross (kv_index + mask) */
static void t_attention(const char *label, int B, int Tq, int Tk, int cap, int H, int D,
                        int use_index, int use_mask, int use_causal) {
    if (skip((double)B * Tq * H * D, (double)B * Tq * Tk * H * D))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "%s B=%d Tq=%d Tk=%d cap=%d H=%d D=%d", label, B, Tq, Tk, cap, H, D);
    const int C = H * D;
    int nblk = B;
    int32_t *idx = NULL, *cpos = NULL;
    if (use_index) {
        nblk = B / 2 + 1;
        idx = malloc(B * 4);
        for (int b = 0; b < B; b++)
            idx[b] = (int32_t)(next_u64() % nblk);
    }
    uint8_t *mask = NULL;
    if (use_mask) {
        mask = malloc((size_t)nblk * cap);
        for (size_t i = 0; i < (size_t)nblk * cap; i++)
            mask[i] = (next_u64() % 3) != 0;
        for (int b = 0; b < nblk; b++)
            mask[(size_t)b * cap] = 1; /* every query sees key 0 */
    }
    if (use_causal) {
        cpos = malloc(B * 4);
        for (int b = 0; b < B; b++)
            cpos[b] = (int32_t)(next_u64() % (Tk - Tq + 1));
        if (B)
            cpos[0] = Tk - Tq; /* one row sees every key */
    }
    const size_t nq = (size_t)B * Tq * C, nkv = (size_t)nblk * cap * C;
    float *q = randv(nq, 2, 0), *k = randv(nkv, 2, 0), *v = randv(nkv, 1, 0);
    float *oc = poisoned(nq);
    float *dq = dev_from(q, nq), *dk = dev_from(k, nkv), *dv = dev_from(v, nkv),
          *dout = dev_poisoned(nq);
    cpu->ops->attention(cpu, oc, q, k, v, idx, mask, cpos, B, Tq, Tk, cap, H, D);
    gpu->ops->attention(gpu, dout, dq, dk, dv, idx, mask, cpos, B, Tq, Tk, cap, H, D);
    check("attention", sh, oc, dout, nq, 1e-5);
    free(idx), free(mask), free(cpos), free(q), free(k), free(v), free(oc);
    gpu->ops->free(gpu, dq), gpu->ops->free(gpu, dk), gpu->ops->free(gpu, dv),
        gpu->ops->free(gpu, dout);
}

/* ---- decode step ops with device-resident indices (ops.h embed_dev, decode_attention,
 * cross_attention, graph_*) ---- */

/* x rounded to dtype t (what a 16-bit KV cache holds) */
static float round_to(dalle_dtype t, float x) {
    const dalle_dtype keep = wdt;
    wdt = t;
    x = round_w(x);
    wdt = keep;
    return x;
}

/* n floats (already representable in t) uploaded to the GPU as dtype t */
static void *dev_as(dalle_dtype t, const float *v, size_t n) {
    void *d = gpu->ops->alloc(gpu, (n ? n : 1) * dalle_dtype_size(t));
    if (!d)
        abort();
    if (t == DALLE_F32) {
        gpu->ops->to_device(gpu, d, v, n * 4);
        return d;
    }
    uint16_t *h = malloc((n ? n : 1) * 2);
    for (size_t i = 0; i < n; i++) {
        if (t == DALLE_F16) {
            _Float16 f = (_Float16)v[i];
            memcpy(&h[i], &f, 2);
        } else {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            h[i] = (uint16_t)(u >> 16);
        }
    }
    gpu->ops->to_device(gpu, d, h, n * 2);
    gpu->ops->sync(gpu);
    free(h);
    return d;
}

/* a device copy of host int32 / uint8 index arrays */
static void *dev_bytes(const void *h, size_t bytes) {
    void *d = gpu->ops->alloc(gpu, bytes ? bytes : 1);
    if (!d)
        abort();
    if (bytes)
        gpu->ops->to_device(gpu, d, h, bytes);
    return d;
}

/* the K (or V) cache back on the host as floats */
static float *cache_host(dalle_dtype t, const void *d, size_t n) {
    if (t == DALLE_F32)
        return host_of(d, n);
    uint16_t *h = malloc((n ? n : 1) * 2);
    gpu->ops->to_host(gpu, h, d, n * 2);
    float *f = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++) {
        if (t == DALLE_F16) {
            _Float16 x;
            memcpy(&x, &h[i], 2);
            f[i] = (float)x;
        } else {
            const uint32_t u = (uint32_t)h[i] << 16;
            memcpy(&f[i], &u, 4);
        }
    }
    free(h);
    return f;
}

/* KV tolerance: the reference sees the cache (and the new K/V) rounded as the GPU stores
 * them, so only summation order differs; 16-bit caches get the 16-bit bound anyway. */
static double kv_tol(void) {
    return gpu->ops->kv_dtype == DALLE_F32 ? 1e-5 : 1e-2;
}

/* a recorded chain of six ops over several steps (caches evolving): 10× the op bound with
 * fp32 weights and cache, the 16-bit bound otherwise */
static double graph_tol(void) {
    return wdt == DALLE_F32 && gpu->ops->kv_dtype == DALLE_F32 ? 1e-4 : 1e-2;
}

/* decode_attention: B rows over distinct slots of a cache of `slots` × cap, random
 * lengths (one row at cap − 1, one at 0); checks the output and the appended cache. */
static void t_decode_attention(int B, int slots, int cap, int H, int D) {
    if (!gpu->ops->decode_attention)
        return;
    if (skip((double)B * H * D, (double)B * cap * H * D))
        return;
    const dalle_dtype kt = gpu->ops->kv_dtype;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d slots=%d cap=%d H=%d D=%d kv=%s", B, slots, cap, H, D,
             dalle_dtype_name(kt));
    const int C = H * D;
    const size_t nc = (size_t)slots * cap * C, nq = (size_t)B * C;
    float *kc = randv(nc, 2, 0), *vc = randv(nc, 1, 0);
    float *q = randv(nq, 2, 0), *k = randv(nq, 2, 0), *v = randv(nq, 1, 0);
    for (size_t i = 0; i < nc; i++)
        kc[i] = round_to(kt, kc[i]), vc[i] = round_to(kt, vc[i]);
    float *kr = malloc(nq * 4), *vr = malloc(nq * 4); /* the new K/V as the cache stores them */
    for (size_t i = 0; i < nq; i++)
        kr[i] = round_to(kt, k[i]), vr[i] = round_to(kt, v[i]);
    int32_t *slot = malloc(B * 4), *pos = malloc(B * 4);
    for (int b = 0; b < B; b++) {
        slot[b] = (int32_t)((b * 7 + 1) % slots); /* distinct: B ≤ slots, gcd(7, slots) = 1 */
        pos[b] = (int32_t)(next_u64() % cap);
    }
    pos[0] = cap - 1;
    if (B > 1)
        pos[1] = 0;
    void *dkc = dev_as(kt, kc, nc), *dvc = dev_as(kt, vc, nc);
    float *dq = dev_from(q, nq), *dk = dev_from(k, nq), *dv = dev_from(v, nq);
    float *dout = dev_poisoned(nq);
    int32_t *dslot = dev_bytes(slot, (size_t)B * 4), *dpos = dev_bytes(pos, (size_t)B * 4);
    float *oc = poisoned(nq);
    cpu->ops->decode_attention(cpu, oc, q, kr, vr, kc, vc, slot, pos, B, cap, H, D);
    gpu->ops->decode_attention(gpu, dout, dq, dk, dv, dkc, dvc, dslot, dpos, B, cap, H, D);
    check("decode_attn", sh, oc, dout, nq, kv_tol());
    float *gk = cache_host(kt, dkc, nc), *gv = cache_host(kt, dvc, nc);
    int bad = 0;
    for (size_t i = 0; i < nc; i++)
        bad += gk[i] != kc[i] || gv[i] != vc[i];
    n_cases++;
    if (bad)
        n_failed++;
    emu_note("decode_append", bad);
    printf("%-4s %-12s %-44s %d cache values differ\n", bad ? "FAIL" : "ok", "decode_append", sh,
           bad);
    free(kc), free(vc), free(q), free(k), free(v), free(kr), free(vr), free(slot), free(pos);
    free(oc), free(gk), free(gv);
    gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dq);
    gpu->ops->free(gpu, dk), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, dout);
    gpu->ops->free(gpu, dslot), gpu->ops->free(gpu, dpos);
}

static void t_cross_attention(int B, int blocks, int T, int H, int D) {
    if (!gpu->ops->cross_attention)
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d blocks=%d T=%d H=%d D=%d", B, blocks, T, H, D);
    const int C = H * D;
    const size_t nkv = (size_t)blocks * T * C, nq = (size_t)B * C;
    float *k = randv(nkv, 2, 0), *v = randv(nkv, 1, 0), *q = randv(nq, 2, 0);
    int32_t *blk = malloc(B * 4);
    uint8_t *mask = malloc((size_t)blocks * T);
    for (int b = 0; b < B; b++)
        blk[b] = (int32_t)(next_u64() % blocks);
    for (size_t i = 0; i < (size_t)blocks * T; i++)
        mask[i] = (next_u64() % 4) == 0;
    for (int b = 0; b < blocks; b++)
        mask[(size_t)b * T] = 1;
    float *dk = dev_from(k, nkv), *dv = dev_from(v, nkv), *dq = dev_from(q, nq),
          *dout = dev_poisoned(nq);
    int32_t *dblk = dev_bytes(blk, (size_t)B * 4);
    uint8_t *dmask = dev_bytes(mask, (size_t)blocks * T);
    float *oc = poisoned(nq);
    cpu->ops->cross_attention(cpu, oc, q, k, v, blk, mask, B, T, H, D);
    gpu->ops->cross_attention(gpu, dout, dq, dk, dv, dblk, dmask, B, T, H, D);
    check("cross_attn", sh, oc, dout, nq, 1e-5);
    free(k), free(v), free(q), free(blk), free(mask), free(oc);
    gpu->ops->free(gpu, dk), gpu->ops->free(gpu, dv), gpu->ops->free(gpu, dq),
        gpu->ops->free(gpu, dout);
    gpu->ops->free(gpu, dblk), gpu->ops->free(gpu, dmask);
}

static void t_embed_dev(int V, int P, int rows, int C) {
    if (!gpu->ops->embed_dev)
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "V=%d rows=%d C=%d +pos", V, rows, C);
    const int64_t ts[2] = {V, C}, ps[2] = {P, C};
    wpair t = weight(2, ts, 1), p = weight(2, ps, 1);
    int32_t *ids = malloc(rows * 4), *pos = malloc(rows * 4);
    for (int r = 0; r < rows; r++)
        ids[r] = (int32_t)(next_u64() % V), pos[r] = (int32_t)(next_u64() % P);
    int32_t *dids = dev_bytes(ids, (size_t)rows * 4), *dpos = dev_bytes(pos, (size_t)rows * 4);
    float *yc = poisoned((size_t)rows * C), *dy = dev_poisoned((size_t)rows * C);
    cpu->ops->embed_dev(cpu, yc, &t.c, ids, &p.c, pos, rows, C);
    gpu->ops->embed_dev(gpu, dy, &t.g, dids, &p.g, dpos, rows, C);
    check("embed_dev", sh, yc, dy, (size_t)rows * C, 1e-6);
    free(ids), free(pos), free(yc), wfree(&t), wfree(&p);
    gpu->ops->free(gpu, dids), gpu->ops->free(gpu, dpos), gpu->ops->free(gpu, dy);
}

/* A recorded mini decode step (embed_dev → layernorm → matmul → decode_attention →
 * cross_attention → add), replayed `steps` times with new token / position values written
 * into the same device index arrays, against the CPU running the same ops eagerly; the
 * KV caches evolve on both sides. Checks the output after every replay. */
static void t_graph(int R, int steps, int C, int H, int cap, int T) {
    if (!gpu->ops->graph_begin) {
        printf("skip graph        (backend records nothing)\n");
        return;
    }
    const dalle_dtype kt = gpu->ops->kv_dtype;
    const int D = C / H, V = 97;
    char sh[96];
    snprintf(sh, sizeof sh, "R=%d steps=%d C=%d H=%d kv=%s", R, steps, C, H, dalle_dtype_name(kt));
    const int64_t es[2] = {V, C}, ps[2] = {cap, C}, ws[2] = {C, C};
    wpair emb = weight(2, es, 1), pe = weight(2, ps, 1), wq = weight(2, ws, 0.2f),
          ln = weight1(C, 1);
    const size_t nc = (size_t)R * cap * C, nx = (size_t)R * C, nkv = (size_t)R * T * C;
    float *kc = calloc(nc, 4), *vc = calloc(nc, 4); /* zero caches: exact in every dtype */
    float *ck = randv(nkv, 1, 0), *cv = randv(nkv, 1, 0);
    uint8_t *mask = malloc((size_t)R * T);
    for (size_t i = 0; i < (size_t)R * T; i++)
        mask[i] = (i % T) < 1 + (i / T) % T;
    int32_t idx[4][64]; /* token, pos, slot, block */
    if (R > 64)
        abort();
    for (int r = 0; r < R; r++)
        idx[2][r] = R - 1 - r, idx[3][r] = r;
    void *dkc = dev_as(kt, kc, nc), *dvc = dev_as(kt, vc, nc);
    float *dck = dev_from(ck, nkv), *dcv = dev_from(cv, nkv);
    uint8_t *dmask = dev_bytes(mask, (size_t)R * T);
    int32_t *didx = dev_bytes(idx, sizeof idx);
    float *x = malloc(nx * 4), *h = malloc(nx * 4), *a = malloc(nx * 4), *o = malloc(nx * 4);
    float *dx = dev_poisoned(nx), *dh = dev_poisoned(nx), *da = dev_poisoned(nx),
          *dout = dev_poisoned(nx);
    /* the step, on either backend; i: index arrays (host for the CPU, device for the GPU) */
#define GRAPH_STEP(be, W, i, X, Hh, A, O, KC, VC, CK, CV, MASK)                                    \
    do {                                                                                           \
        (be)->ops->embed_dev(be, X, &emb.W, (i)[0], &pe.W, (i)[1], R, C);                          \
        (be)->ops->layernorm(be, Hh, X, &ln.W, NULL, R, C, 1e-5f);                                 \
        (be)->ops->matmul(be, A, Hh, &wq.W, R, C, C, 0);                                           \
        (be)->ops->decode_attention(be, O, A, Hh, X, KC, VC, (i)[2], (i)[1], R, cap, H, D);        \
        (be)->ops->cross_attention(be, A, O, CK, CV, (i)[3], MASK, R, T, H, D);                    \
        (be)->ops->add(be, O, A, (int64_t)R *C);                                                   \
    } while (0)
    const int32_t *hi[4] = {idx[0], idx[1], idx[2], idx[3]};
    const int32_t *di[4] = {didx, didx + 64, didx + 128, didx + 192};
    void *g = NULL;
    double worst = 0;
    int ok = 1;
    for (int s = 0; s < steps && ok; s++) {
        for (int r = 0; r < R; r++)
            idx[0][r] = (int32_t)(next_u64() % V), idx[1][r] = s;
        gpu->ops->to_device(gpu, didx, idx, sizeof idx);
        /* with a 16-bit cache the GPU rounds the appended K/V and the CPU does not, so the
         * states drift apart within the 16-bit bound (kv_tol) */
        GRAPH_STEP(cpu, c, hi, x, h, a, o, kc, vc, ck, cv, mask);
        if (s == 0) { /* eager warm-up step (grows scratch), then record */
            GRAPH_STEP(gpu, g, di, dx, dh, da, dout, dkc, dvc, dck, dcv, dmask);
        } else {
            if (!g) {
                if (!gpu->ops->graph_begin(gpu)) {
                    printf("skip graph        (DALLE_CUDA_GRAPHS=0)\n");
                    break;
                }
                GRAPH_STEP(gpu, g, di, dx, dh, da, dout, dkc, dvc, dck, dcv, dmask);
                g = gpu->ops->graph_end(gpu);
                if (!g) {
                    ok = 0;
                    printf("FAIL graph        %-44s recording failed\n", sh);
                    break;
                }
            }
            if (!gpu->ops->graph_launch(gpu, g)) {
                ok = 0;
                printf("FAIL graph        %-44s handle stale at step %d\n", sh, s);
                break;
            }
        }
        float *got = host_of(dout, nx);
        double diff = 0, scale = 0;
        for (size_t i = 0; i < nx; i++) {
            const double d = fabs((double)got[i] - o[i]);
            if (!(d <= diff))
                diff = d;
            if (fabs(o[i]) > scale)
                scale = fabs(o[i]);
        }
        free(got);
        const double rel = scale > 0 ? diff / scale : diff;
        if (!(rel <= worst))
            worst = rel;
        if (!(rel <= graph_tol()))
            ok = 0;
    }
#undef GRAPH_STEP
    n_cases++;
    if (!ok)
        n_failed++;
    emu_note("graph", worst);
    printf("%-4s %-12s %-44s max_rel %.3e  tol %.0e\n", ok ? "ok" : "FAIL", "graph", sh, worst,
           graph_tol());
    if (g)
        gpu->ops->graph_free(gpu, g);
    free(kc), free(vc), free(ck), free(cv), free(mask), free(x), free(h), free(a), free(o);
    wfree(&emb), wfree(&pe), wfree(&wq), wfree(&ln);
    gpu->ops->free(gpu, dkc), gpu->ops->free(gpu, dvc), gpu->ops->free(gpu, dck),
        gpu->ops->free(gpu, dcv);
    gpu->ops->free(gpu, dmask), gpu->ops->free(gpu, didx), gpu->ops->free(gpu, dx),
        gpu->ops->free(gpu, dh);
    gpu->ops->free(gpu, da), gpu->ops->free(gpu, dout);
}

static void t_unary(const char *op, int64_t n) {
    char sh[96];
    snprintf(sh, sizeof sh, "n=%lld", (long long)n);
    float *a = randv((size_t)n, 6, 0), *b = randv((size_t)n, 2, 0);
    float *da = dev_from(a, (size_t)n), *db = dev_from(b, (size_t)n);
    float *dy = dev_poisoned((size_t)n);
    float *yc = poisoned((size_t)n);
    if (!strcmp(op, "gelu_mul")) {
        cpu->ops->gelu_mul(cpu, yc, a, b, n);
        gpu->ops->gelu_mul(gpu, dy, da, db, n);
    } else if (!strcmp(op, "quick_gelu")) {
        cpu->ops->quick_gelu(cpu, yc, a, n);
        gpu->ops->quick_gelu(gpu, dy, da, n);
    } else { /* add: y += x on a copy of b */
        memcpy(yc, b, (size_t)n * 4);
        gpu->ops->to_device(gpu, dy, b, (size_t)n * 4);
        cpu->ops->add(cpu, yc, a, n);
        gpu->ops->add(gpu, dy, da, n);
    }
    check(op, sh, yc, dy, (size_t)n, 1e-6);
    free(a), free(b), free(yc), gpu->ops->free(gpu, da), gpu->ops->free(gpu, db),
        gpu->ops->free(gpu, dy);
}

static void t_bias_add(int rows, int N) {
    char sh[96];
    snprintf(sh, sizeof sh, "rows=%d N=%d", rows, N);
    wpair bias = weight1(N, 1);
    float *y = randv((size_t)rows * N, 1, 0);
    float *dy = dev_from(y, (size_t)rows * N);
    cpu->ops->bias_add(cpu, y, &bias.c, rows, N);
    gpu->ops->bias_add(gpu, dy, &bias.g, rows, N);
    check("bias_add", sh, y, dy, (size_t)rows * N, 1e-6);
    free(y), wfree(&bias), gpu->ops->free(gpu, dy);
}

static void t_conv2d(int B, int H, int W, int Cin, int Cout, int k, int with_bias) {
    if (skip((double)B * H * W * Cout, (double)B * H * W * Cout * k * k * Cin))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d %d->%d k=%d%s", B, H, W, Cin, Cout, k,
             with_bias ? " +b" : "");
    const int64_t ws[4] = {Cout, k, k, Cin};
    wpair w = weight(4, ws, 0.3f), bias = weight1(Cout, 1);
    const size_t nx = (size_t)B * H * W * Cin, ny = (size_t)B * H * W * Cout;
    float *x = randv(nx, 1, 0), *yc = poisoned(ny);
    float *dx = dev_from(x, nx), *dy = dev_poisoned(ny);
    cpu->ops->conv2d(cpu, yc, x, &w.c, with_bias ? &bias.c : NULL, B, H, W, Cin, Cout, k);
    gpu->ops->conv2d(gpu, dy, dx, &w.g, with_bias ? &bias.g : NULL, B, H, W, Cin, Cout, k);
    check("conv2d", sh, yc, dy, ny, gemm_tol());
    free(x), free(yc), wfree(&w), wfree(&bias), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

/* conv of the ×2 nearest upsample (16-bit weights: the implicit GEMM reads x through the
 * upsample); H, W are the output size */
static void t_conv2d_up2x(int B, int H, int W, int Cin, int Cout, int k) {
    if (!gpu->ops->conv2d_up2x)
        return;
    if (skip((double)B * H * W * Cout, (double)B * H * W * Cout * k * k * Cin))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d %d->%d k=%d", B, H, W, Cin, Cout, k);
    const int64_t ws[4] = {Cout, k, k, Cin};
    wpair w = weight(4, ws, 0.3f), bias = weight1(Cout, 1);
    const size_t nx = (size_t)B * (H / 2) * (W / 2) * Cin, ny = (size_t)B * H * W * Cout;
    float *x = randv(nx, 1, 0), *yc = poisoned(ny);
    float *dx = dev_from(x, nx), *dy = dev_poisoned(ny);
    cpu->ops->conv2d_up2x(cpu, yc, x, &w.c, &bias.c, B, H, W, Cin, Cout, k);
    gpu->ops->conv2d_up2x(gpu, dy, dx, &w.g, &bias.g, B, H, W, Cin, Cout, k);
    check("conv2d_up2x", sh, yc, dy, ny, gemm_tol());
    free(x), free(yc), wfree(&w), wfree(&bias), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

/* conv of GroupNorm(x) (+ swish): 16-bit weights normalise while staging the implicit GEMM */
static void t_conv2d_gn(int B, int H, int W, int Cin, int Cout, int k, int groups, int swish) {
    if (!gpu->ops->conv2d_gn)
        return;
    if (skip((double)B * H * W * Cout, (double)B * H * W * Cout * k * k * Cin))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d %d->%d k=%d G=%d%s", B, H, W, Cin, Cout, k, groups,
             swish ? " swish" : "");
    const int64_t ws[4] = {Cout, k, k, Cin};
    wpair w = weight(4, ws, 0.3f), bias = weight1(Cout, 1), g = weight1(Cin, 1),
          b = weight1(Cin, 1);
    const size_t nx = (size_t)B * H * W * Cin, ny = (size_t)B * H * W * Cout;
    float *x = randv(nx, 3, 20.0f), *yc = poisoned(ny); /* offset: the hi/lo mean path */
    float *dx = dev_from(x, nx), *dy = dev_poisoned(ny);
    cpu->ops->conv2d_gn(cpu, yc, x, &g.c, &b.c, groups, 1e-6f, swish, &w.c, &bias.c, B, H, W, Cin,
                        Cout, k);
    gpu->ops->conv2d_gn(gpu, dy, dx, &g.g, &b.g, groups, 1e-6f, swish, &w.g, &bias.g, B, H, W, Cin,
                        Cout, k);
    check("conv2d_gn", sh, yc, dy, ny, gemm_tol());
    free(x), free(yc), wfree(&w), wfree(&bias), wfree(&g), wfree(&b);
    gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

/* pixels to uint8 on the device: exact, boundary values and NaN included; x[at] = value
 * replaces one of them (at -1: none; the edge values hold the NaN at 6). The nonfinite flag
 * must be 1 exactly when the input holds a NaN or ±inf, on both backends. */
static void t_to_rgb8(int64_t n, int64_t at, float value) {
    if (!gpu->ops->to_rgb8)
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "n=%lld x[%lld]=%g", (long long)n, (long long)at, value);
    float *x = randv((size_t)n, 0.75f, 0.5f); /* [-0.25, 1.25): both clamps */
    static const float edge[] = {0.0f, 1.0f, -0.0f, 0.5f, 1.0f / 255.0f, 254.5f / 255.0f,
                                 NAN,  2.0f};
    for (int i = 0; i < 8 && i < n; i++)
        x[i] = edge[i];
    if (at >= 0)
        x[at] = value;
    int want = 0;
    for (int64_t i = 0; i < n; i++)
        want |= !isfinite(x[i]);
    uint8_t *yc = malloc((size_t)n), *yg = malloc((size_t)n);
    float *dx = dev_from(x, (size_t)n);
    uint8_t *dy = gpu->ops->alloc(gpu, (size_t)n);
    int32_t fc = 0, fg = 0, *dflag = dev_bytes(&fg, sizeof fg);
    cpu->ops->to_rgb8(cpu, yc, x, n, &fc);
    gpu->ops->to_rgb8(gpu, dy, dx, n, dflag);
    gpu->ops->to_host(gpu, yg, dy, (size_t)n);
    gpu->ops->to_host(gpu, &fg, dflag, sizeof fg);
    long bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += yc[i] != yg[i];
    bad += (fc != want) + (fg != want);
    n_cases++;
    if (bad)
        n_failed++;
    emu_note("to_rgb8", bad);
    printf("%-4s %-12s %-44s %ld bytes differ (flag cpu %d cuda %d, want %d)\n",
           bad ? "FAIL" : "ok", "to_rgb8", sh, bad, fc, fg, want);
    free(x), free(yc), free(yg), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
    gpu->ops->free(gpu, dflag);
}

/* CLIP preprocessing by a plan (ops.h clip_prep) vs model/image_prep.c, the Pillow-exact
 * host implementation: bit for bit, on the device and with the CPU twin. prep = 1: the full
 * CLIP plan of in_w×in_h → size (dalle_image_prep); prep = 0: a bare resize to
 * out_w×out_h (one axis may stay), cropped to size at (0, 0). */
static void t_clip_prep(int prep, int in_w, int in_h, int out_w, int out_h, int size, int B) {
    if (!gpu->ops->clip_prep)
        return;
    static const double mean_d[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double std_d[3] = {0.26862954, 0.26130258, 0.27577711};
    dalle_error err = {0};
    dalle_image_prep ip;
    dalle_bicubic bare;
    const dalle_bicubic *r;
    int top = 0, left = 0;
    if (prep) {
        if (dalle_image_prep_init(&ip, in_w, in_h, size, &err) != DALLE_OK)
            abort();
        r = &ip.bicubic, top = ip.top, left = ip.left;
    } else {
        if (dalle_bicubic_init(&bare, in_w, in_h, out_w, out_h, 3, &err) != DALLE_OK)
            abort();
        r = &bare;
    }
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d -> %dx%d crop %d%s", B, in_w, in_h, r->out_w, r->out_h,
             size, r->vertical_first ? " vfirst" : "");
    const size_t nin = (size_t)B * in_h * in_w * 3, nout = (size_t)B * size * size * 3;
    uint8_t *rgb = malloc(nin);
    for (size_t i = 0; i < nin; i++)
        rgb[i] = (uint8_t)(next_u64() % 7 == 0 ? 255 * (i & 1) : next_u64());
    float *ref = poisoned(nout);
    if (prep) {
        dalle_image_prep_run(&ip, rgb, B, ref);
    } else { /* the same crop and normalisation as image_prep.c */
        uint8_t *res = malloc((size_t)r->out_w * r->out_h * 3);
        for (int b = 0; b < B; b++) {
            dalle_bicubic_run(&bare, rgb + (size_t)b * in_h * in_w * 3, res);
            for (int y = 0; y < size; y++)
                for (int i = 0; i < size * 3; i++) {
                    const float v = (float)(res[(size_t)y * r->out_w * 3 + i] * (1.0 / 255.0));
                    ref[((size_t)b * size + y) * size * 3 + i] =
                        (v - (float)mean_d[i % 3]) / (float)std_d[i % 3];
                }
        }
        free(res);
    }
    dalle_clip_prep_plan pl = {.in_w = in_w,
                               .in_h = in_h,
                               .out_w = r->out_w,
                               .out_h = r->out_h,
                               .size = size,
                               .top = top,
                               .left = left,
                               .horizontal = in_w != r->out_w,
                               .vertical = in_h != r->out_h,
                               .vertical_first = r->vertical_first,
                               .taps_x = r->x.taps,
                               .taps_y = r->y.taps};
    for (int c = 0; c < 3; c++)
        pl.mean[c] = (float)mean_d[c], pl.std[c] = (float)std_d[c];
    dalle_clip_prep_plan hp = pl; /* host arrays, for the CPU twin */
    hp.first_x = r->x.first, hp.count_x = r->x.count, hp.coef_x = r->x.coef;
    hp.first_y = r->y.first, hp.count_y = r->y.count, hp.coef_y = r->y.coef;
    void *d[6] = {dev_bytes(r->x.first, (size_t)r->out_w * 4),
                  dev_bytes(r->x.count, (size_t)r->out_w * 4),
                  dev_bytes(r->x.coef, (size_t)r->out_w * r->x.taps * 4),
                  dev_bytes(r->y.first, (size_t)r->out_h * 4),
                  dev_bytes(r->y.count, (size_t)r->out_h * 4),
                  dev_bytes(r->y.coef, (size_t)r->out_h * r->y.taps * 4)};
    pl.first_x = d[0], pl.count_x = d[1], pl.coef_x = d[2];
    pl.first_y = d[3], pl.count_y = d[4], pl.coef_y = d[5];
    uint8_t *drgb = dev_bytes(rgb, nin);
    float *dout = dev_poisoned(nout), *twin = poisoned(nout);
    gpu->ops->clip_prep(gpu, dout, drgb, &pl, B);
    check("clip_prep", sh, ref, dout, nout, 0);
    cpu->ops->clip_prep(cpu, twin, rgb, &hp, B);
    long bad = 0;
    for (size_t i = 0; i < nout; i++)
        bad += memcmp(&twin[i], &ref[i], 4) != 0;
    n_cases++;
    if (bad)
        n_failed++;
    printf("%-4s %-12s %-44s %ld values differ (CPU twin vs image_prep.c)\n", bad ? "FAIL" : "ok",
           "clip_prep_cpu", sh, bad);
    for (int i = 0; i < 6; i++)
        gpu->ops->free(gpu, d[i]);
    gpu->ops->free(gpu, drgb), gpu->ops->free(gpu, dout);
    free(rgb), free(ref), free(twin);
    if (prep)
        dalle_image_prep_free(&ip);
    else
        dalle_bicubic_free(&bare);
}

static void t_group_norm(int B, int HW, int C, int groups, int swish) {
    if (skip((double)B * HW * C, 0))
        return;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d HW=%d C=%d G=%d%s", B, HW, C, groups, swish ? " swish" : "");
    wpair g = weight1(C, 1), b = weight1(C, 1);
    const size_t n = (size_t)B * HW * C;
    float *x = randv(n, 3, 50.0f), *yc = poisoned(n); /* large offset: the hi/lo mean path */
    float *dx = dev_from(x, n), *dy = dev_poisoned(n);
    cpu->ops->group_norm(cpu, yc, x, &g.c, &b.c, B, HW, C, groups, 1e-6f, swish);
    gpu->ops->group_norm(gpu, dy, dx, &g.g, &b.g, B, HW, C, groups, 1e-6f, swish);
    check("group_norm", sh, yc, dy, n, 1e-5);
    free(x), free(yc), wfree(&g), wfree(&b), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

static void t_upsample(int B, int H, int W, int C) {
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d C=%d", B, H, W, C);
    const size_t nx = (size_t)B * H * W * C, ny = nx * 4;
    float *x = randv(nx, 1, 0), *yc = poisoned(ny);
    float *dx = dev_from(x, nx), *dy = dev_poisoned(ny);
    cpu->ops->upsample2x(cpu, yc, x, B, H, W, C);
    gpu->ops->upsample2x(gpu, dy, dx, B, H, W, C);
    check("upsample2x", sh, yc, dy, ny, 0);
    free(x), free(yc), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

static void t_patchify(int B, int H, int W, int C, int p) {
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d %dx%d C=%d p=%d", B, H, W, C, p);
    const size_t n = (size_t)B * H * W * C;
    float *x = randv(n, 1, 0), *yc = poisoned(n);
    float *dx = dev_from(x, n), *dy = dev_poisoned(n);
    cpu->ops->patchify(cpu, yc, x, B, H, W, C, p);
    gpu->ops->patchify(gpu, dy, dx, B, H, W, C, p);
    check("patchify", sh, yc, dy, n, 0);
    free(x), free(yc), gpu->ops->free(gpu, dx), gpu->ops->free(gpu, dy);
}

/* Token-for-token sampler parity over many seeds and parameter sets. ties: logits on a
 * coarse grid, so that many candidates are equal and the index order decides. The CUDA
 * backend has two kernels for the candidates (select-and-sort by default, k rounds with
 * DALLE_CUDA_SAMPLER=rounds); main runs the grid with each, labelled sample / sample_rounds. */
static const char *sample_label = "sample";
static void t_sample(int B, int V, int ld, int calls, int ties) {
    if (small_only && calls > 3)
        calls = 3;
    char sh[96];
    snprintf(sh, sizeof sh, "B=%d V=%d ld=%d calls=%d%s", B, V, ld, calls, ties ? " ties" : "");
    const size_t n = (size_t)B * 2 * ld;
    float *l = malloc(n * 4);
    float *dl = dev_poisoned(n);
    dalle_sample_params *p = malloc(B * sizeof *p);
    int32_t *step = malloc(B * 4), *tc = malloc(B * 4), *tg = malloc(B * 4);
    static const int ks[] = {1, 2, 50, 256, 1 << 30};
    static const float tps[] = {1.0f, 0.9f, 0.5f}, temps[] = {1.0f, 0.7f, 1.3f},
                       cs[] = {10.0f, 3.0f, 0.0f};
    long mism = 0, total = 0, dev_bad = 0;
    /* sample_dev: rows [2B + 2] and codes [7B + 5] poisoned with -1; image b's token goes to
     * rows 2b, 2b + 1 and codes[7(B − 1 − b) + 3]; the rest must stay -1 */
    const size_t nrows = (size_t)2 * B + 2, ncodes = (size_t)7 * B + 5;
    int32_t *at = malloc(B * 4), *hrows = malloc(nrows * 4), *hcodes = malloc(ncodes * 4);
    int32_t *drows = gpu->ops->alloc(gpu, nrows * 4), *dcodes = gpu->ops->alloc(gpu, ncodes * 4);
    for (int b = 0; b < B; b++)
        at[b] = 7 * (B - 1 - b) + 3;
    for (int c = 0; c < calls; c++) {
        for (size_t i = 0; i < n; i++) {
            const float g = uni() * 4;
            l[i] = ties ? roundf(g * 2) / 2 : g;
        }
        gpu->ops->to_device(gpu, dl, l, n * 4);
        for (int b = 0; b < B; b++) {
            p[b].cond_scale = cs[next_u64() % 3];
            p[b].temperature = temps[next_u64() % 3];
            p[b].top_p = tps[next_u64() % 3];
            p[b].top_k = ks[next_u64() % 5];
            if (p[b].top_k > V && V > 4096)
                p[b].top_k = 1024; /* k = V is slow on the GPU */
            if (small_only && p[b].top_k > 64)
                p[b].top_k = 64;
            p[b].seed = next_u64();
            p[b].image = (uint32_t)b;
            step[b] = (int32_t)(next_u64() % 256);
        }
        cpu->ops->sample(cpu, tc, l, B, V, ld, p, step);
        gpu->ops->sample(gpu, tg, dl, B, V, ld, p, step);
        if (gpu->ops->sample_dev) { /* the same tokens, left on the device */
            memset(hrows, 0xff, nrows * 4), memset(hcodes, 0xff, ncodes * 4);
            gpu->ops->to_device(gpu, drows, hrows, nrows * 4);
            gpu->ops->to_device(gpu, dcodes, hcodes, ncodes * 4);
            gpu->ops->sample_dev(gpu, drows, dcodes, at, dl, B, V, ld, p, step);
            gpu->ops->to_host(gpu, hrows, drows, nrows * 4);
            gpu->ops->to_host(gpu, hcodes, dcodes, ncodes * 4);
            for (int b = 0; b < B; b++) {
                dev_bad += hrows[2 * b] != tg[b] || hrows[2 * b + 1] != tg[b];
                dev_bad += hcodes[at[b]] != tg[b];
                hcodes[at[b]] = -1;
            }
            dev_bad += hrows[2 * B] != -1 || hrows[2 * B + 1] != -1;
            for (size_t i = 0; i < ncodes; i++)
                dev_bad += hcodes[i] != -1;
        }
        for (int b = 0; b < B; b++) {
            total++;
            if (tc[b] != tg[b]) {
                if (mism < 5)
                    printf("     sample mismatch: call %d row %d k=%d p=%.2f T=%.2f s=%.1f: cpu %d "
                           "gpu %d\n",
                           c, b, p[b].top_k, p[b].top_p, p[b].temperature, p[b].cond_scale, tc[b],
                           tg[b]);
                mism++;
            }
        }
    }
    n_cases++;
    if (mism)
        n_failed++;
    emu_note(sample_label, mism);
    printf("%-4s %-12s %-44s tokens %ld/%ld identical\n", mism ? "FAIL" : "ok", sample_label, sh,
           total - mism, total);
    if (gpu->ops->sample_dev) {
        n_cases++;
        if (dev_bad)
            n_failed++;
        printf("%-4s %-12s %-44s %ld misplaced tokens (rows, codes vs sample)\n",
               dev_bad ? "FAIL" : "ok", "sample_dev", sh, dev_bad);
    }
    free(at), free(hrows), free(hcodes), gpu->ops->free(gpu, drows), gpu->ops->free(gpu, dcodes);
    free(l), free(p), free(step), free(tc), free(tg), gpu->ops->free(gpu, dl);
}

/* dalle_cuda_fill_random (the benchmarks' device-side weights): in [−scale, scale), finite,
 * the same for the same seed and different for another, in every dtype */
static void t_fill_random(int64_t n) {
    if (!strcmp(gpu->ops->name, "cpu"))
        return;
    for (int t = DALLE_F32; t <= DALLE_BF16; t++) {
        const size_t es = dalle_dtype_size((dalle_dtype)t);
        void *d = gpu->ops->alloc(gpu, (size_t)n * es);
        unsigned char *a = malloc((size_t)n * es), *b = malloc((size_t)n * es);
        dalle_cuda_fill_random(gpu, d, n, (dalle_dtype)t, 0.5f, 42);
        gpu->ops->to_host(gpu, a, d, (size_t)n * es);
        dalle_cuda_fill_random(gpu, d, n, (dalle_dtype)t, 0.5f, 42);
        gpu->ops->to_host(gpu, b, d, (size_t)n * es);
        long bad = memcmp(a, b, (size_t)n * es) != 0;
        for (int64_t i = 0; i < n; i++) {
            float v;
            if (t == DALLE_F32)
                memcpy(&v, a + i * 4, 4);
            else if (t == DALLE_F16) {
                _Float16 h;
                memcpy(&h, a + i * 2, 2);
                v = (float)h;
            } else {
                uint32_t u = (uint32_t)a[i * 2] << 16 | (uint32_t)a[i * 2 + 1] << 24;
                memcpy(&v, &u, 4);
            }
            bad += !(v >= -0.5f && v <= 0.5f);
        }
        dalle_cuda_fill_random(gpu, d, n, (dalle_dtype)t, 0.5f, 43);
        gpu->ops->to_host(gpu, b, d, (size_t)n * es);
        bad += memcmp(a, b, (size_t)n * es) == 0;
        n_cases++;
        if (bad)
            n_failed++;
        emu_note("fill_random", bad);
        printf("%-4s %-12s n=%-42lld %ld bad values (range, determinism, seed)\n",
               bad ? "FAIL" : "ok", "fill_random", (long long)n, bad);
        gpu->ops->free(gpu, d);
        free(a), free(b);
    }
}

/* --tiny: every kernel and every branch of its launcher (splits, tiles with tails, both
 * samplers, both CLIP pass orders) on the smallest shapes that reach them — for the
 * emulated device (make gpu-emu, make test), which runs each thread as a fiber */
static void grid_tiny(void) {
    t_matmul(3, 33, 40, 17, 0);
    t_matmul(2, 20, 20, 16, 1);
    t_layernorm(1, 1, 1, 1, 0);
    t_layernorm(3, 300, 1, 1, 0);
    t_layernorm(5, 77, 0, 1, 1);
    t_embed(50, 64, 5, 40, 1);
    t_embed(100, 1, 5, 31, 0);
    t_attention("enc", 2, 8, 8, 8, 2, 16, 0, 1, 0);
    t_attention("dec", 3, 1, 20, 21, 2, 16, 1, 0, 1);
    t_attention("odd", 2, 7, 11, 13, 3, 5, 1, 1, 1);
    t_decode_attention(2, 3, 96, 2, 16); /* 4 row·heads → 3 splits of 32 keys */
    t_decode_attention(3, 4, 37, 3, 5);  /* odd: one split */
    t_cross_attention(5, 3, 7, 3, 5);
    t_embed_dev(50, 16, 5, 24);
    t_graph(2, 4, 16, 2, 8, 4);
    t_unary("gelu_mul", 1);
    t_unary("gelu_mul", 1000);
    t_unary("quick_gelu", 777);
    t_unary("add", 777);
    t_bias_add(13, 3);
    t_conv2d(2, 7, 5, 3, 4, 3, 1);   /* 3×3: im2col + SGEMM, or igemm with 16-bit weights */
    t_conv2d(1, 9, 9, 8, 3, 1, 1);   /* 1×1: one GEMM */
    t_conv2d(1, 9, 9, 20, 70, 3, 1); /* 2 × 2 tiles with M and N tails, 6 K steps */
    t_conv2d_up2x(2, 6, 4, 5, 7, 3);
    t_conv2d_gn(1, 9, 7, 12, 5, 3, 3, 0);
    t_conv2d_gn(1, 4, 4, 64, 8, 1, 32, 1);
    t_to_rgb8(1000, -1, 0.0f);
    t_to_rgb8(1000, 6, INFINITY);
    t_clip_prep(0, 40, 30, 24, 20, 16, 2); /* both axes down */
    t_clip_prep(0, 20, 40, 30, 24, 16, 1); /* the other pass order */
    t_clip_prep(0, 30, 20, 30, 26, 16, 1); /* vertical only */
    t_clip_prep(0, 20, 20, 20, 20, 16, 1); /* nothing to resize */
    t_group_norm(3, 5, 6, 3, 1);
    t_group_norm(2, 49, 64, 32, 0);
    t_upsample(2, 3, 5, 7);
    t_patchify(1, 6, 4, 5, 2);
    t_fill_random(1000);
    t_sample(4, 300, 320, 3, 0);
    t_sample(3, 64, 64, 2, 1);
    t_sample(2, 1, 3, 2, 0);
    setenv("DALLE_CUDA_SAMPLER", "rounds", 1);
    sample_label = "sample_rounds";
    t_sample(2, 300, 320, 2, 1);
    sample_label = "sample";
    unsetenv("DALLE_CUDA_SAMPLER");
}

/* the full grid: the models' real shapes and odd ones (a GPU machine) */
static void grid_full(void) {
    /* matmul: decode (M = 2 rows per image), prefill, odd sizes, lm_head restricted */
    t_matmul(1, 7, 7, 5, 0);
    t_matmul(3, 33, 40, 17, 0);
    t_matmul(2, 1024, 1024, 1024, 0);
    t_matmul(2, 1024, 1024, 1024, 1);
    t_matmul(16, 2730, 2730, 1024, 0);
    t_matmul(128, 1024, 1024, 2730, 1);
    t_matmul(2, 16384, 16385, 1024, 0);
    t_matmul(130, 257, 300, 301, 0);
    /* layernorm */
    t_layernorm(1, 1, 1, 1, 0);
    t_layernorm(3, 1024, 1, 1, 0);
    t_layernorm(130, 2048, 1, 0, 0);
    t_layernorm(5, 777, 0, 1, 1);
    t_layernorm(7, 33, 0, 0, 0);
    /* embed */
    t_embed(50, 64, 64, 1024, 1);
    t_embed(16385, 256, 33, 77, 1);
    t_embed(100, 1, 5, 31, 0);
    /* attention: encoder / prefill with text mask, decode (causal, KV blocks), cross */
    t_attention("enc", 3, 64, 64, 64, 16, 64, 0, 1, 0);
    t_attention("dec", 5, 1, 257, 257, 16, 64, 1, 0, 1);
    t_attention("dec", 16, 1, 100, 257, 32, 64, 0, 0, 1);
    t_attention("cross", 6, 1, 64, 64, 16, 64, 1, 1, 0);
    t_attention("odd", 2, 7, 11, 13, 3, 5, 1, 1, 1);
    t_attention("longD", 2, 3, 9, 9, 2, 200, 0, 1, 1);
    /* decode step with device indices: flash-decoding over the KV cache (kv dtype = the
     * backend's), cross-attention, embed, and a recorded step replayed */
    t_decode_attention(2, 3, 256, 16, 64);   /* mini, batch 1: 32 row·heads → splits */
    t_decode_attention(4, 5, 256, 32, 64);   /* Mega, batch 2 */
    t_decode_attention(64, 67, 256, 16, 64); /* large batch: one split */
    t_decode_attention(3, 4, 37, 3, 5);      /* odd */
    t_decode_attention(2, 3, 9, 2, 200);     /* long head */
    t_cross_attention(6, 4, 64, 16, 64);
    t_cross_attention(5, 3, 7, 3, 5);
    t_embed_dev(16385, 256, 33, 77);
    t_graph(4, 6, 64, 4, 16, 8);
    t_graph(2, 5, 256, 4, 256, 64);
    /* elementwise */
    t_unary("gelu_mul", 1);
    t_unary("gelu_mul", 2 * 2730 * 8 + 3);
    t_unary("quick_gelu", 100003);
    t_unary("add", 65537);
    t_bias_add(1, 1);
    t_bias_add(77, 1024);
    t_bias_add(13, 3);
    /* image side */
    t_conv2d(2, 7, 5, 3, 4, 3, 1);
    t_conv2d(1, 16, 16, 256, 512, 3, 1);
    t_conv2d(1, 9, 9, 8, 3, 1, 1);
    t_conv2d(1, 32, 32, 128, 128, 3, 0);
    t_conv2d(2, 11, 6, 5, 7, 5, 1);
    t_conv2d(1, 64, 64, 128, 3, 3, 1);
    t_conv2d(2, 32, 32, 256, 256, 3, 1);   /* several 64×64 tiles, K = 2304 */
    t_conv2d_up2x(1, 32, 32, 512, 512, 3); /* VQGAN L4 → L3 upsample conv */
    t_conv2d_up2x(2, 14, 10, 5, 7, 3);     /* odd tails */
    t_conv2d_up2x(1, 8, 8, 6, 3, 1);
    t_conv2d_gn(2, 16, 16, 128, 256, 3, 32, 1); /* VQGAN resblock conv1 */
    t_conv2d_gn(1, 9, 7, 12, 5, 3, 3, 0);
    t_conv2d_gn(1, 8, 8, 64, 32, 1, 32, 1); /* 1×1 (attention q/k/v after GN) */
    t_to_rgb8(256 * 256 * 3 + 5, -1, 0.0f); /* the NaN edge */
    t_to_rgb8(256 * 256 * 3 + 5, 6, 0.25f); /* all finite */
    t_to_rgb8(256 * 256 * 3 + 5, 6, INFINITY);
    t_to_rgb8(256 * 256 * 3 + 5, 6, -INFINITY);
    /* CLIP preprocessing (Pillow-exact): VQGAN 256² → 224, both axes up, down with the
     * vertical pass first, one axis only, nothing to resize */
    t_clip_prep(1, 256, 256, 0, 0, 224, 3);
    t_clip_prep(1, 300, 200, 0, 0, 224, 2);
    t_clip_prep(1, 640, 480, 0, 0, 224, 1);
    t_clip_prep(1, 230, 1000, 0, 0, 224, 1);
    t_clip_prep(1, 224, 224, 0, 0, 224, 2);
    t_clip_prep(0, 100, 80, 100, 50, 50, 2);
    t_clip_prep(0, 90, 70, 37, 70, 37, 1);
    t_group_norm(2, 49, 64, 32, 1);
    t_group_norm(1, 4096, 128, 32, 0);
    t_group_norm(1, 65536, 128, 32, 1);
    t_group_norm(3, 5, 6, 3, 1);
    t_upsample(2, 3, 5, 7);
    t_upsample(1, 64, 64, 128);
    t_patchify(2, 28, 28, 3, 14);
    t_patchify(1, 224, 224, 3, 32);
    t_patchify(1, 6, 4, 5, 2);
    /* sampler: token for token */
    t_sample(8, 16384, 16415, 60, 0);
    t_sample(8, 16384, 16384, 20, 1);
    t_sample(16, 300, 320, 100, 0);
    t_sample(16, 300, 320, 100, 1);
    t_sample(4, 1, 3, 10, 0);
    t_sample(64, 16384, 16384, 2, 0);          /* a large batch */
    setenv("DALLE_CUDA_SAMPLER", "rounds", 1); /* the k-round kernel, same grid (fewer calls) */
    sample_label = "sample_rounds";
    t_sample(8, 16384, 16415, 10, 0);
    t_sample(8, 16384, 16384, 5, 1);
    t_sample(16, 300, 320, 30, 1);
    t_sample(4, 1, 3, 10, 0);
    unsetenv("DALLE_CUDA_SAMPLER");
}

int main(int argc, char **argv) {
    int self = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu-vs-cpu")) {
            self = 1;
        } else if (!strcmp(argv[i], "--tiny")) {
            tiny = 1;
        } else if (!strcmp(argv[i], "--small")) {
            small_only = 1;
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            const char *v = argv[++i];
            wdt = !strcmp(v, "f16") ? DALLE_F16 : !strcmp(v, "bf16") ? DALLE_BF16 : DALLE_F32;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            rng_state = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: gpu_ops [--weights f32|f16|bf16] [--seed S] [--cpu-vs-cpu] "
                            "[--small] [--tiny]\n");
            return 2;
        }
    }
    dalle_error err = {0};
    if (self)
        wdt = DALLE_F32;
    gpu = self ? dalle_backend_cpu_new(1) : dalle_backend_cuda_new(0, wdt, &err);
    if (!gpu) {
        printf("gpu_ops: skipped: no CUDA device (%s)\n", err.msg);
        return 2;
    }
    cpu = dalle_backend_cpu_new(0);
    printf("gpu_ops: %s backend vs CPU backend, weights %s, seed %llu\n",
           self ? "a second CPU (--cpu-vs-cpu)" : "CUDA", dalle_dtype_name(wdt),
           (unsigned long long)rng_state);

    if (tiny)
        grid_tiny();
    else
        grid_full();

    printf("\nworst max_rel per op (weights %s):\n", dalle_dtype_name(wdt));
    for (int k = 0; k < n_ops; k++)
        printf("  %-12s %.3e\n", op_names[k], worst_by_op[k]);
    printf("gpu_ops: %d cases, %d failed\n", n_cases, n_failed);
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    return n_failed ? 1 : 0;
}
