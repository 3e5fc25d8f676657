/* vqgan.c — VQGAN decoder: config section, weight binding, work sizing and the forward
 * pass (see vqgan.h; docs/model-spec.md §5.2, order of operations as taming-transformers'
 * Decoder.forward):
 *   codes → codebook rows [B, L, L, E] → post_quant_conv (1×1) → conv_in (3×3)
 *   → mid: ResBlock, AttnBlock, ResBlock
 *   → levels n−1 … 0: (num_res_blocks + 1) × [ResBlock (+ AttnBlock at the configured
 *     resolutions)], then, above level 0, nearest ×2 upsample + 3×3 conv
 *   → GroupNorm + swish → conv_out (3×3) → [B, R, R, O].
 * Every op goes through the backend seam. GroupNorm + swish → conv pairs run as one
 * conv2d_gn, upsample → conv as one conv2d_up2x, and the pixels become bytes on the backend
 * (to_rgb8) when the backend has those ops (ops.h optional slots; the unfused sequence
 * otherwise — on the CPU the fused ops are that same sequence, so the output is the same
 * bit for bit). Feature maps rotate between three work buffers of the largest map size, so
 * a decode allocates no work buffers (the CPU backend's fused ops allocate their
 * intermediate map per call).
 */
#include "model/vqgan.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model_loader/json_util.h"
#include "model_loader/weights.h"

/* ---- config section ------------------------------------------------------------------ */

#define VQGAN_MAX_CHANNELS 8192

typedef struct {
    const char *key;
    size_t off; /* int field of dalle_vqgan_hparams */
    int lo, hi;
} int_key;

#define HP(f) offsetof(dalle_vqgan_hparams, f)
static const int_key INT_KEYS[] = {
    {"codebook_size", HP(codebook_size), 1, 1 << 24},
    {"embed_dim", HP(embed_dim), 1, VQGAN_MAX_CHANNELS},
    {"z_channels", HP(z_channels), 1, VQGAN_MAX_CHANNELS},
    {"ch", HP(ch), 1, VQGAN_MAX_CHANNELS},
    {"num_res_blocks", HP(num_res_blocks), 0, 64},
    {"resolution", HP(resolution), 1, 4096},
    {"out_ch", HP(out_ch), 1, 64},
    {"groups", HP(groups), 1, VQGAN_MAX_CHANNELS},
};
#define N_INT_KEYS (sizeof INT_KEYS / sizeof *INT_KEYS)
static const char *const OTHER_KEYS[] = {"ch_mult", "attn_resolutions", "eps"};

static int known_key(const char *key) {
    for (size_t i = 0; i < N_INT_KEYS; i++)
        if (!strcmp(key, INT_KEYS[i].key))
            return 1;
    for (size_t i = 0; i < sizeof OTHER_KEYS / sizeof *OTHER_KEYS; i++)
        if (!strcmp(key, OTHER_KEYS[i]))
            return 1;
    return 0;
}

static dalle_status need(json_t *obj, const char *key, json_t **v, const char *label,
                         dalle_error *err) {
    if (!(*v = json_object_get(obj, key)))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: missing key 'vqgan.%s'", label, key);
    return DALLE_OK;
}

/* A JSON array of min_n … DALLE_VQGAN_MAX_LEVELS integers in [lo, hi]. */
static dalle_status read_int_list(json_t *obj, const char *key, int min_n, int lo, int hi, int *out,
                                  int *n, const char *label, dalle_error *err) {
    char found[64];
    json_t *v;
    dalle_status s = need(obj, key, &v, label, err);
    if (s != DALLE_OK)
        return s;
    const size_t len = json_array_size(v);
    if (!json_is_array(v) || len < (size_t)min_n || len > DALLE_VQGAN_MAX_LEVELS)
        return dalle_error_set(
            err, DALLE_ERR_FORMAT, "%s: vqgan.%s: expected an array of %d to %d integers, found %s",
            label, key, min_n, DALLE_VQGAN_MAX_LEVELS, dalle_json_describe(v, found, sizeof found));
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        const json_int_t x = json_integer_value(e);
        if (!json_is_integer(e) || x < lo || x > hi)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: vqgan.%s[%zu]: expected an integer in [%d, %d], found %s",
                                   label, key, i, lo, hi,
                                   dalle_json_describe(e, found, sizeof found));
        out[i] = (int)x;
    }
    *n = (int)len;
    return DALLE_OK;
}

/* The level whose resolution is res, or -1. */
static int level_of(const dalle_vqgan_hparams *hp, int res) {
    for (int i = 0; i < hp->n_levels; i++)
        if (hp->resolution >> i == res)
            return i;
    return -1;
}

static int level_has_attn(const dalle_vqgan_hparams *hp, int level) {
    for (int a = 0; a < hp->n_attn; a++)
        if (hp->attn_resolutions[a] == hp->resolution >> level)
            return 1;
    return 0;
}

static dalle_status check_relations(dalle_vqgan_hparams *hp, const char *label, dalle_error *err) {
    for (int i = 0; i < hp->n_levels; i++) {
        const long c = (long)hp->ch * hp->ch_mult[i];
        if (c > VQGAN_MAX_CHANNELS)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: vqgan.ch_mult[%d]: vqgan.ch %d × %d = %ld channels, at "
                                   "most %d supported",
                                   label, i, hp->ch, hp->ch_mult[i], c, VQGAN_MAX_CHANNELS);
        if (c % hp->groups)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: vqgan.groups: %d does not divide the %ld channels of level "
                                   "%d (vqgan.ch %d × vqgan.ch_mult[%d] %d)",
                                   label, hp->groups, c, i, hp->ch, i, hp->ch_mult[i]);
    }
    const int f = 1 << (hp->n_levels - 1);
    if (hp->resolution % f)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: vqgan.resolution: %d is not a multiple of 2^(%d levels - 1) "
                               "= %d",
                               label, hp->resolution, hp->n_levels, f);
    hp->latent = hp->resolution / f;
    for (int a = 0; a < hp->n_attn; a++) {
        const int r = hp->attn_resolutions[a];
        if (level_of(hp, r) < 0)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: vqgan.attn_resolutions[%d]: %d is not the resolution of "
                                   "a level (%d down to %d, halving)",
                                   label, a, r, hp->resolution, hp->latent);
        for (int b = 0; b < a; b++)
            if (hp->attn_resolutions[b] == r)
                return dalle_error_set(err, DALLE_ERR_FORMAT,
                                       "%s: vqgan.attn_resolutions[%d]: %d is listed twice", label,
                                       a, r);
    }
    return DALLE_OK;
}

static dalle_status parse_object(dalle_vqgan_hparams *hp, json_t *obj, const char *label,
                                 dalle_error *err) {
    char found[64], shown[64];
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!known_key(key))
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: unknown key 'vqgan.%s'", label,
                                   dalle_json_printable(key, shown, sizeof shown));
    }
    dalle_status s;
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        const int_key *k = &INT_KEYS[i];
        if ((s = need(obj, k->key, &v, label, err)) != DALLE_OK)
            return s;
        const json_int_t x = json_integer_value(v);
        if (!json_is_integer(v) || x < k->lo || x > k->hi)
            return dalle_error_set(
                err, DALLE_ERR_FORMAT, "%s: vqgan.%s: expected an integer in [%d, %d], found %s",
                label, k->key, k->lo, k->hi, dalle_json_describe(v, found, sizeof found));
        *(int *)((char *)hp + k->off) = (int)x;
    }
    if ((s = read_int_list(obj, "ch_mult", 1, 1, 64, hp->ch_mult, &hp->n_levels, label, err)))
        return s;
    if ((s = read_int_list(obj, "attn_resolutions", 0, 1, 4096, hp->attn_resolutions, &hp->n_attn,
                           label, err)))
        return s;
    if ((s = need(obj, "eps", &v, label, err)) != DALLE_OK)
        return s;
    const double eps = json_number_value(v);
    if (!json_is_number(v) || !(eps > 0 && (float)eps > 0 && eps <= 0.1))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: vqgan.eps: expected a number in (0, 0.1], found %s", label,
                               dalle_json_describe(v, found, sizeof found));
    hp->eps = (float)eps;
    return check_relations(hp, label, err);
}

dalle_status dalle_vqgan_hparams_parse(dalle_vqgan_hparams *hp, const char *json, const char *label,
                                       dalle_error *err) {
    memset(hp, 0, sizeof *hp);
    if (!json)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: missing section 'vqgan'", label);
    json_t *obj = dalle_json_parse_object(json, strlen(json), label, err);
    if (!obj)
        return err ? err->status : DALLE_ERR_FORMAT;
    dalle_status s = parse_object(hp, obj, label, err);
    json_decref(obj);
    return s;
}

/* ---- weights ------------------------------------------------------------------------- */

typedef struct {
    dalle_binder b;
    dalle_safetensors st;
    dalle_error *err;
} loader;

static dalle_status bind_conv(loader *L, dalle_vqgan_conv *c, int cout, int cin, int k,
                              const char *name) {
    const int64_t n[1] = {cout};
    dalle_status s =
        dalle_binder_take_conv(&L->b, &L->st, &c->w, cout, cin, k, L->err, "%s.weight", name);
    return s ? s : dalle_binder_take(&L->b, &L->st, &c->b, 1, n, L->err, "%s.bias", name);
}

static dalle_status bind_norm(loader *L, dalle_vqgan_norm *nm, int C, const char *name) {
    const int64_t n[1] = {C};
    dalle_status s = dalle_binder_take(&L->b, &L->st, &nm->g, 1, n, L->err, "%s.weight", name);
    return s ? s : dalle_binder_take(&L->b, &L->st, &nm->b, 1, n, L->err, "%s.bias", name);
}

/* "<prefix>.<part>" in buf */
static const char *sub(char *buf, size_t cap, const char *prefix, const char *part) {
    snprintf(buf, cap, "%s.%s", prefix, part);
    return buf;
}

static dalle_status bind_resblock(loader *L, dalle_vqgan_resblock *rb, int cin, int cout,
                                  const char *name) {
    char p[128];
    dalle_status s;
    rb->cin = cin;
    rb->cout = cout;
    if ((s = bind_norm(L, &rb->norm1, cin, sub(p, sizeof p, name, "norm1"))))
        return s;
    if ((s = bind_conv(L, &rb->conv1, cout, cin, 3, sub(p, sizeof p, name, "conv1"))))
        return s;
    if ((s = bind_norm(L, &rb->norm2, cout, sub(p, sizeof p, name, "norm2"))))
        return s;
    if ((s = bind_conv(L, &rb->conv2, cout, cout, 3, sub(p, sizeof p, name, "conv2"))))
        return s;
    if (cin != cout)
        return bind_conv(L, &rb->nin, cout, cin, 1, sub(p, sizeof p, name, "nin_shortcut"));
    return DALLE_OK;
}

static dalle_status bind_attn(loader *L, dalle_vqgan_attn *a, int C, const char *name) {
    char p[128];
    dalle_status s;
    a->C = C;
    if ((s = bind_norm(L, &a->norm, C, sub(p, sizeof p, name, "norm"))))
        return s;
    if ((s = bind_conv(L, &a->q, C, C, 1, sub(p, sizeof p, name, "q"))))
        return s;
    if ((s = bind_conv(L, &a->k, C, C, 1, sub(p, sizeof p, name, "k"))))
        return s;
    if ((s = bind_conv(L, &a->v, C, C, 1, sub(p, sizeof p, name, "v"))))
        return s;
    return bind_conv(L, &a->proj, C, C, 1, sub(p, sizeof p, name, "proj_out"));
}

static dalle_status bind_all(loader *L, dalle_vqgan *m) {
    const dalle_vqgan_hparams *hp = &m->hp;
    const int E = hp->embed_dim, Z = hp->z_channels, nb = hp->num_res_blocks + 1;
    int cin = hp->ch * hp->ch_mult[hp->n_levels - 1];
    const int64_t cb[2] = {hp->codebook_size, E};
    char name[96];
    dalle_status s;
    if ((s = dalle_binder_take(&L->b, &L->st, &m->codebook, 2, cb, L->err, "embedding.weight")) ||
        (s = bind_conv(L, &m->post_quant, Z, E, 1, "post_quant_conv")) ||
        (s = bind_conv(L, &m->conv_in, cin, Z, 3, "decoder.conv_in")) ||
        (s = bind_resblock(L, &m->mid1, cin, cin, "decoder.mid.block_1")) ||
        (s = bind_attn(L, &m->mid_attn, cin, "decoder.mid.attn_1")) ||
        (s = bind_resblock(L, &m->mid2, cin, cin, "decoder.mid.block_2")))
        return s;
    m->levels = calloc((size_t)hp->n_levels, sizeof *m->levels);
    if (!m->levels)
        return dalle_error_set(L->err, DALLE_ERR_NOMEM, "out of memory");
    for (int i = hp->n_levels - 1; i >= 0; i--) {
        dalle_vqgan_level *lv = &m->levels[i];
        const int cout = hp->ch * hp->ch_mult[i];
        lv->res = hp->resolution >> i;
        lv->blocks = calloc((size_t)nb, sizeof *lv->blocks);
        lv->attn = level_has_attn(hp, i) ? calloc((size_t)nb, sizeof *lv->attn) : NULL;
        if (!lv->blocks || (level_has_attn(hp, i) && !lv->attn))
            return dalle_error_set(L->err, DALLE_ERR_NOMEM, "out of memory");
        for (int j = 0; j < nb; j++) {
            snprintf(name, sizeof name, "decoder.up.%d.block.%d", i, j);
            if ((s = bind_resblock(L, &lv->blocks[j], j ? cout : cin, cout, name)))
                return s;
            snprintf(name, sizeof name, "decoder.up.%d.attn.%d", i, j);
            if (lv->attn && (s = bind_attn(L, &lv->attn[j], cout, name)))
                return s;
        }
        cin = cout;
        snprintf(name, sizeof name, "decoder.up.%d.upsample.conv", i);
        if (i > 0 && (s = bind_conv(L, &lv->upsample, cout, cout, 3, name)))
            return s;
    }
    if ((s = bind_norm(L, &m->norm_out, cin, "decoder.norm_out")) ||
        (s = bind_conv(L, &m->conv_out, hp->out_ch, cin, 3, "decoder.conv_out")))
        return s;
    return dalle_safetensors_check_all_used(&L->st, L->err);
}

dalle_status dalle_vqgan_load(dalle_vqgan *m, dalle_backend *be, const char *config_json,
                              const char *label, const char *weights_path, dalle_error *err) {
    memset(m, 0, sizeof *m);
    m->be = be;
    dalle_status s = dalle_vqgan_hparams_parse(&m->hp, config_json, label, err);
    if (s != DALLE_OK)
        return s;
    loader L = {.err = err};
    dalle_binder_init(&L.b, be);
    s = dalle_safetensors_open(&L.st, weights_path, err);
    if (s == DALLE_OK) {
        s = bind_all(&L, m);
        if (s == DALLE_OK)
            s = dalle_binder_upload(&L.b, &m->block, err);
        m->weight_bytes = L.b.bytes;
        dalle_safetensors_close(&L.st);
    }
    dalle_binder_free(&L.b);
    if (s != DALLE_OK)
        dalle_vqgan_free(m);
    return s;
}

void dalle_vqgan_free(dalle_vqgan *m) {
    if (m->block)
        m->be->ops->free(m->be, m->block);
    if (m->levels)
        for (int i = 0; i < m->hp.n_levels; i++) {
            free(m->levels[i].blocks);
            free(m->levels[i].attn);
        }
    free(m->levels);
    memset(m, 0, sizeof *m);
}

/* ---- work ---------------------------------------------------------------------------- */

/* Floats per image of the largest feature map and of the largest attention map. */
static void map_sizes(const dalle_vqgan_hparams *hp, size_t *map, size_t *attn) {
    const size_t l2 = (size_t)hp->latent * hp->latent;
    int cin = hp->ch * hp->ch_mult[hp->n_levels - 1];
    size_t c0 = (size_t)cin;
    if ((size_t)hp->embed_dim > c0)
        c0 = (size_t)hp->embed_dim;
    if ((size_t)hp->z_channels > c0)
        c0 = (size_t)hp->z_channels;
    *map = l2 * c0;
    *attn = l2 * cin; // mid
    for (int i = hp->n_levels - 1; i >= 0; i--) {
        const int cout = hp->ch * hp->ch_mult[i];
        const size_t res = (size_t)(hp->resolution >> i);
        const size_t m = res * res * (size_t)(cin > cout ? cin : cout);
        if (m > *map)
            *map = m;
        if (level_has_attn(hp, i) && res * res * cout > *attn)
            *attn = res * res * cout;
        cin = cout; // the ×2 upsample output is the next level's input map
    }
}

dalle_status dalle_vqgan_work_new(dalle_vqgan_work *w, const dalle_vqgan *m, dalle_backend *be,
                                  int max_batch, dalle_error *err) {
    const dalle_vqgan_hparams *hp = &m->hp;
    DALLE_ASSERT(max_batch >= 1);
    memset(w, 0, sizeof *w);
    const size_t pixels = (size_t)hp->resolution * hp->resolution;
    if (pixels * max_batch > INT_MAX)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "vqgan: %d images of %d×%d pixels are more than one call can hold",
                               max_batch, hp->resolution, hp->resolution);
    w->be = be;
    w->max_batch = max_batch;
    size_t map, attn;
    map_sizes(hp, &map, &attn);
    const size_t B = (size_t)max_batch, out = B * pixels * hp->out_ch, f = sizeof(float);
    void **bufs[] = {(void **)&w->x, (void **)&w->t,     (void **)&w->u,   (void **)&w->k,
                     (void **)&w->v, (void **)&w->image, (void **)&w->rgb, (void **)&w->nonfinite};
    const size_t bytes[] = {B * map * f,  B * map * f, B * map * f, B * attn * f,
                            B * attn * f, out * f,     out,         sizeof(int32_t)};
    int ok = 1;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        ok &= (*bufs[i] = be->ops->alloc(be, bytes[i])) != NULL;
    w->host = malloc(out * sizeof(float));
    if (!ok || !w->host) {
        dalle_vqgan_work_free(w);
        return dalle_error_set(err, DALLE_ERR_NOMEM,
                               "vqgan: cannot allocate decoder work for %d images (%zu MiB) on %s",
                               max_batch, ((3 * B * map + 2 * B * attn + out) * 4 + out) >> 20,
                               be->ops->name);
    }
    return DALLE_OK;
}

void dalle_vqgan_work_free(dalle_vqgan_work *w) {
    if (w->be) {
        void *bufs[] = {w->x, w->t, w->u, w->k, w->v, w->image, w->rgb, w->nonfinite};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            if (bufs[i])
                w->be->ops->free(w->be, bufs[i]);
    }
    free(w->host);
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------------------- */

typedef struct {
    const dalle_vqgan *m;
    dalle_vqgan_work *w;
    dalle_backend *be;
    const dalle_backend_ops *op;
    int B;
    float *x, *t, *u; // current map, two scratch maps
} pass;

static void swap_xu(pass *p) {
    float *tmp = p->x;
    p->x = p->u;
    p->u = tmp;
}

/* y [B, res, res, cout] = conv(swish(norm(x))) for x [B, res, res, cin], one fused op
 * (ops.h conv2d_gn) when the backend has it, else GroupNorm into `scratch` (which may be x;
 * not y) and the conv. */
static void gn_conv(pass *p, float *y, const float *x, float *scratch, const dalle_vqgan_norm *nm,
                    const dalle_vqgan_conv *cv, int res, int cin, int cout) {
    const dalle_vqgan_hparams *hp = &p->m->hp;
    if (p->op->conv2d_gn) {
        p->op->conv2d_gn(p->be, y, x, &nm->g, &nm->b, hp->groups, hp->eps, 1, &cv->w, &cv->b, p->B,
                         res, res, cin, cout, 3);
        return;
    }
    p->op->group_norm(p->be, scratch, x, &nm->g, &nm->b, p->B, res * res, cin, hp->groups, hp->eps,
                      1);
    p->op->conv2d(p->be, y, scratch, &cv->w, &cv->b, p->B, res, res, cin, cout, 3);
}

static void resblock(pass *p, const dalle_vqgan_resblock *rb, int res) {
    const int B = p->B, HW = res * res;
    gn_conv(p, p->u, p->x, p->t, &rb->norm1, &rb->conv1, res, rb->cin, rb->cout);
    gn_conv(p, p->t, p->u, p->u, &rb->norm2, &rb->conv2, res, rb->cout, rb->cout); // h
    const int64_t n = (int64_t)B * HW * rb->cout;
    if (rb->cin == rb->cout) {
        p->op->add(p->be, p->x, p->t, n);
        return;
    }
    p->op->conv2d(p->be, p->u, p->x, &rb->nin.w, &rb->nin.b, B, res, res, rb->cin, rb->cout, 1);
    p->op->add(p->be, p->u, p->t, n);
    swap_xu(p);
}

static void attnblock(pass *p, const dalle_vqgan_attn *a, int res) {
    const int B = p->B, HW = res * res, C = a->C;
    float *k = p->w->k, *v = p->w->v;
    p->op->group_norm(p->be, p->t, p->x, &a->norm.g, &a->norm.b, B, HW, C, p->m->hp.groups,
                      p->m->hp.eps, 0);
    p->op->conv2d(p->be, p->u, p->t, &a->q.w, &a->q.b, B, res, res, C, C, 1); // q [B, HW, C]
    p->op->conv2d(p->be, k, p->t, &a->k.w, &a->k.b, B, res, res, C, C, 1);
    p->op->conv2d(p->be, v, p->t, &a->v.w, &a->v.b, B, res, res, C, C, 1);
    // one head of D = C over the HW positions of each image: scale C^-1/2
    p->op->attention(p->be, p->t, p->u, k, v, NULL, NULL, NULL, B, HW, HW, HW, 1, C);
    p->op->conv2d(p->be, p->u, p->t, &a->proj.w, &a->proj.b, B, res, res, C, C, 1);
    p->op->add(p->be, p->x, p->u, (int64_t)B * HW * C);
}

dalle_status dalle_vqgan_decode(const dalle_vqgan *m, dalle_vqgan_work *w, const int32_t *codes,
                                int B, dalle_error *err) {
    const dalle_vqgan_hparams *hp = &m->hp;
    const int L = hp->latent, N = L * L, E = hp->embed_dim, Z = hp->z_channels;
    DALLE_ASSERT(B >= 1 && B <= w->max_batch);
    for (int64_t i = 0; i < (int64_t)B * N; i++)
        if (codes[i] < 0 || codes[i] >= hp->codebook_size)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                                   "vqgan: image %d: code %d at position %d is outside [0, %d)",
                                   (int)(i / N), codes[i], (int)(i % N), hp->codebook_size);
    pass p = {m, w, w->be, w->be->ops, B, w->x, w->t, w->u};
    int C = hp->ch * hp->ch_mult[hp->n_levels - 1];
    p.op->embed(p.be, p.t, &m->codebook, codes, NULL, NULL, B * N, E); // [B, L, L, E]
    p.op->conv2d(p.be, p.u, p.t, &m->post_quant.w, &m->post_quant.b, B, L, L, E, Z, 1);
    p.op->conv2d(p.be, p.x, p.u, &m->conv_in.w, &m->conv_in.b, B, L, L, Z, C, 3); // [B, L, L, C]
    resblock(&p, &m->mid1, L);
    attnblock(&p, &m->mid_attn, L);
    resblock(&p, &m->mid2, L);
    for (int i = hp->n_levels - 1; i >= 0; i--) {
        const dalle_vqgan_level *lv = &m->levels[i];
        const int res = lv->res;
        for (int j = 0; j <= hp->num_res_blocks; j++) {
            resblock(&p, &lv->blocks[j], res);
            if (lv->attn)
                attnblock(&p, &lv->attn[j], res);
        }
        C = lv->blocks[hp->num_res_blocks].cout;
        if (i == 0)
            break;
        const dalle_vqgan_conv *up = &lv->upsample; // ×2 nearest, then conv: [B, 2res, 2res, C]
        if (p.op->conv2d_up2x) {
            p.op->conv2d_up2x(p.be, p.u, p.x, &up->w, &up->b, B, 2 * res, 2 * res, C, C, 3);
        } else {
            p.op->upsample2x(p.be, p.t, p.x, B, res, res, C);
            p.op->conv2d(p.be, p.u, p.t, &up->w, &up->b, B, 2 * res, 2 * res, C, C, 3);
        }
        swap_xu(&p);
    }
    gn_conv(&p, w->image, p.x, p.t, &m->norm_out, &m->conv_out, hp->resolution, C,
            hp->out_ch); // [B, R, R, O]
    return DALLE_OK;
}

void dalle_vqgan_to_u8(uint8_t *pixels, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float v = x[i] > 0 ? (x[i] < 1 ? x[i] : 1.0f) : 0.0f; // NaN → 0
        pixels[i] = (uint8_t)(v * 255.0f);
    }
}

int dalle_vqgan_read_u8(const dalle_vqgan *m, dalle_vqgan_work *w, int B, uint8_t *pixels) {
    DALLE_ASSERT(B >= 1 && B <= w->max_batch);
    const dalle_backend_ops *op = w->be->ops;
    const size_t per = (size_t)m->hp.resolution * m->hp.resolution * m->hp.out_ch, n = B * per;
    if (op->to_rgb8) {
        int32_t bad = 0;
        op->to_device(w->be, w->nonfinite, &bad, sizeof bad);
        op->to_rgb8(w->be, w->rgb, w->image, (int64_t)n, w->nonfinite);
        op->to_host(w->be, pixels, w->rgb, n);
        op->to_host(w->be, &bad, w->nonfinite, sizeof bad);
        if (!bad)
            return -1;
    }
    // no device conversion, or a non-finite value to find: the floats come back
    op->to_host(w->be, w->host, w->image, n * sizeof(float));
    if (!op->to_rgb8) {
        dalle_vqgan_to_u8(pixels, w->host, n);
        op->to_device(w->be, w->rgb, pixels, n);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w->host[i]))
            return (int)(i / per);
    return -1;
}
