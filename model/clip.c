/* clip.c — CLIP towers and scores (see clip.h; docs/model-spec.md §6.4–§6.5).
 *
 * Order of operations, as HF CLIPModel / OpenAI CLIP:
 *   vision: patchify → x = patches · W_patchᵀ (no bias), class token prepended, + positions
 *           → ln_pre → blocks → ln_post(token 0) → · W_visualᵀ (no bias)
 *   text:   x = token + position embeddings → causal blocks → final LN at the first EOT
 *           → · W_textᵀ (no bias)
 *   block:  x += out(MHA(LN1(x))) with q/k/v/out biases; x += fc2(quick_gelu(fc1(LN2(x))))
 * The vision embedding is built in place: every row first gets its position row (one
 * gather), then each image's patch rows accumulate their matmul and its row 0 gets the
 * class embedding, so no copy op is needed.
 */
#include "model/clip.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "model_loader/json_util.h"
#include "model_loader/weights.h"

#define MAX_HEAD_DIM 256 /* as for BART: what the attention kernels support */

/* ---- config ---------------------------------------------------------------------- */

typedef struct {
    const char *key; /* NULL ends a table */
    size_t off;      /* int field in dalle_clip_hparams */
    int lo, hi;
} int_key;

#define HP(m) offsetof(dalle_clip_hparams, m)
static const int_key VISION_KEYS[] = {
    {"image_size", HP(image_size), 1, 4096},
    {"patch_size", HP(patch_size), 1, 4096},
    {"width", HP(vision.width), 1, 16384},
    {"layers", HP(vision.layers), 1, 256},
    {"heads", HP(vision.heads), 1, 16384},
    {"mlp_dim", HP(vision.mlp_dim), 1, 65536},
    {NULL, 0, 0, 0},
};
static const int_key TEXT_KEYS[] = {
    {"context_length", HP(context_length), 1, 2048},
    {"vocab_size", HP(vocab_size), 1, 1000000},
    {"width", HP(text.width), 1, 16384},
    {"layers", HP(text.layers), 1, 256},
    {"heads", HP(text.heads), 1, 16384},
    {"mlp_dim", HP(text.mlp_dim), 1, 65536},
    {NULL, 0, 0, 0},
};
static const char *const ROOT_KEYS[] = {"embed_dim",   "layer_norm_eps", "logit_scale_from_weights",
                                        "logit_scale", "vision",         "text",
                                        NULL};

static dalle_status unknown_keys(json_t *obj, const char *const *keys, const int_key *ints,
                                 const char *path, const char *label, dalle_error *err) {
    char shown[64];
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int known = 0;
        for (int i = 0; keys && keys[i] && !known; i++)
            known = !strcmp(keys[i], key);
        for (int i = 0; ints && ints[i].key && !known; i++)
            known = !strcmp(ints[i].key, key);
        if (!known)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: unknown key '%s.%s'", label, path,
                                   dalle_json_printable(key, shown, sizeof shown));
    }
    return DALLE_OK;
}

static json_t *need(json_t *obj, const char *key, const char *path, const char *label,
                    dalle_error *err) {
    json_t *v = json_object_get(obj, key);
    if (!v)
        dalle_error_set(err, DALLE_ERR_FORMAT, "%s: missing key '%s.%s'", label, path, key);
    return v;
}

static dalle_status read_int(json_t *v, int lo, int hi, int *dst, const char *path, const char *key,
                             const char *label, dalle_error *err) {
    char found[64];
    json_int_t x = json_integer_value(v);
    if (!json_is_integer(v) || x < lo || x > hi)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %s.%s: expected an integer in [%d, %d], found %s", label, path,
                               key, lo, hi, dalle_json_describe(v, found, sizeof found));
    *dst = (int)x;
    return DALLE_OK;
}

/* A number in (lo, hi] that stays > lo as a float. */
static dalle_status read_num(json_t *v, double lo, double hi, float *dst, const char *path,
                             const char *key, const char *label, dalle_error *err) {
    char found[64];
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x > lo && (float)x > lo && x <= hi))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %s.%s: expected a number in (%g, %g], found %s", label, path,
                               key, lo, hi, dalle_json_describe(v, found, sizeof found));
    *dst = (float)x;
    return DALLE_OK;
}

/* The section clip.<name>: an object whose keys are exactly the table's. */
static dalle_status read_tower(json_t *root, const char *name, const int_key *keys,
                               dalle_clip_hparams *hp, const char *label, dalle_error *err) {
    char path[32], found[64];
    snprintf(path, sizeof path, "clip.%s", name);
    json_t *obj = need(root, name, "clip", label, err);
    if (!obj)
        return DALLE_ERR_FORMAT;
    if (!json_is_object(obj))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: %s: expected an object, found %s", label,
                               path, dalle_json_describe(obj, found, sizeof found));
    dalle_status s = unknown_keys(obj, NULL, keys, path, label, err);
    for (const int_key *k = keys; s == DALLE_OK && k->key; k++) {
        json_t *v = need(obj, k->key, path, label, err);
        s = v ? read_int(v, k->lo, k->hi, (int *)((char *)hp + k->off), path, k->key, label, err)
              : DALLE_ERR_FORMAT;
    }
    return s;
}

static dalle_status check_heads(const dalle_clip_tower_hparams *t, const char *name,
                                const char *label, dalle_error *err) {
    if (t->width % t->heads)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: clip.%s.heads: %d does not divide clip.%s.width %d", label,
                               name, t->heads, name, t->width);
    if (t->width / t->heads > MAX_HEAD_DIM)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: clip.%s.heads: head width %d / %d = %d, at most %d supported",
                               label, name, t->width, t->heads, t->width / t->heads, MAX_HEAD_DIM);
    return DALLE_OK;
}

static dalle_status parse_root(dalle_clip_hparams *hp, json_t *root, const char *label,
                               dalle_error *err) {
    char found[64];
    json_t *v;
    dalle_status s = unknown_keys(root, ROOT_KEYS, NULL, "clip", label, err);
    if (s != DALLE_OK)
        return s;
    if (!(v = need(root, "embed_dim", "clip", label, err)))
        return DALLE_ERR_FORMAT;
    if ((s = read_int(v, 1, 65536, &hp->embed_dim, "clip", "embed_dim", label, err)))
        return s;
    if (!(v = need(root, "layer_norm_eps", "clip", label, err)))
        return DALLE_ERR_FORMAT;
    if ((s = read_num(v, 0, 0.1, &hp->layer_norm_eps, "clip", "layer_norm_eps", label, err)))
        return s;
    hp->logit_scale_from_weights = 1;
    if ((v = json_object_get(root, "logit_scale_from_weights"))) {
        if (!json_is_boolean(v))
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: clip.logit_scale_from_weights: expected true or false, "
                                   "found %s",
                                   label, dalle_json_describe(v, found, sizeof found));
        hp->logit_scale_from_weights = json_is_true(v);
    }
    v = json_object_get(root, "logit_scale");
    if (hp->logit_scale_from_weights && v)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: clip.logit_scale: not allowed while "
                               "clip.logit_scale_from_weights is true",
                               label);
    if (!hp->logit_scale_from_weights) {
        if (!(v = need(root, "logit_scale", "clip", label, err)))
            return DALLE_ERR_FORMAT;
        /* the log of the scale; OpenAI clips the scale at 100 (log 4.6052) */
        if ((s = read_num(v, -20, 20, &hp->logit_scale, "clip", "logit_scale", label, err)))
            return s;
    }
    if ((s = read_tower(root, "vision", VISION_KEYS, hp, label, err)))
        return s;
    if ((s = read_tower(root, "text", TEXT_KEYS, hp, label, err)))
        return s;
    if (hp->image_size % hp->patch_size)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: clip.vision.patch_size: %d does not divide "
                               "clip.vision.image_size %d",
                               label, hp->patch_size, hp->image_size);
    if ((s = check_heads(&hp->vision, "vision", label, err)))
        return s;
    return check_heads(&hp->text, "text", label, err);
}

dalle_status dalle_clip_hparams_parse(dalle_clip_hparams *hp, const char *json, const char *label,
                                      dalle_error *err) {
    memset(hp, 0, sizeof *hp);
    if (!label)
        label = "config.json";
    if (!json)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: missing section 'clip' (this model has no CLIP ranker)", label);
    json_t *root = dalle_json_parse_object(json, strlen(json), label, err);
    if (!root)
        return DALLE_ERR_FORMAT;
    dalle_status s = parse_root(hp, root, label, err);
    json_decref(root);
    if (s != DALLE_OK)
        memset(hp, 0, sizeof *hp);
    return s;
}

/* ---- weights --------------------------------------------------------------------- */

/* One tower's blocks, final LN and projection; `prefix` is vision_model or text_model. */
static dalle_status bind_tower(dalle_binder *b, dalle_safetensors *st, dalle_clip_tower *T,
                               const char *prefix, const char *final_ln, const char *proj, int E,
                               dalle_error *err) {
    dalle_status s;
    const int64_t C = T->hp.width, F = T->hp.mlp_dim;
    const int64_t c[1] = {C}, f[1] = {F};
    T->layers = calloc((size_t)T->hp.layers, sizeof *T->layers);
    if (!T->layers)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < T->hp.layers; i++) {
        dalle_clip_layer *L = &T->layers[i];
        DALLE_TAKE(&L->ln1_g, 1, c, err, "%s.encoder.layers.%d.layer_norm1.weight", prefix, i);
        DALLE_TAKE(&L->ln1_b, 1, c, err, "%s.encoder.layers.%d.layer_norm1.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->q, C, C, err, "%s.encoder.layers.%d.self_attn.q_proj.weight", prefix,
                          i);
        DALLE_TAKE(&L->q_b, 1, c, err, "%s.encoder.layers.%d.self_attn.q_proj.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->k, C, C, err, "%s.encoder.layers.%d.self_attn.k_proj.weight", prefix,
                          i);
        DALLE_TAKE(&L->k_b, 1, c, err, "%s.encoder.layers.%d.self_attn.k_proj.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->v, C, C, err, "%s.encoder.layers.%d.self_attn.v_proj.weight", prefix,
                          i);
        DALLE_TAKE(&L->v_b, 1, c, err, "%s.encoder.layers.%d.self_attn.v_proj.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->o, C, C, err, "%s.encoder.layers.%d.self_attn.out_proj.weight",
                          prefix, i);
        DALLE_TAKE(&L->o_b, 1, c, err, "%s.encoder.layers.%d.self_attn.out_proj.bias", prefix, i);
        DALLE_TAKE(&L->ln2_g, 1, c, err, "%s.encoder.layers.%d.layer_norm2.weight", prefix, i);
        DALLE_TAKE(&L->ln2_b, 1, c, err, "%s.encoder.layers.%d.layer_norm2.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->fc1, F, C, err, "%s.encoder.layers.%d.mlp.fc1.weight", prefix, i);
        DALLE_TAKE(&L->fc1_b, 1, f, err, "%s.encoder.layers.%d.mlp.fc1.bias", prefix, i);
        DALLE_TAKE_MATMUL(&L->fc2, C, F, err, "%s.encoder.layers.%d.mlp.fc2.weight", prefix, i);
        DALLE_TAKE(&L->fc2_b, 1, c, err, "%s.encoder.layers.%d.mlp.fc2.bias", prefix, i);
    }
    DALLE_TAKE(&T->final_g, 1, c, err, "%s.%s.weight", prefix, final_ln);
    DALLE_TAKE(&T->final_b, 1, c, err, "%s.%s.bias", prefix, final_ln);
    DALLE_TAKE_MATMUL(&T->proj, E, C, err, "%s", proj);
    return DALLE_OK;
}

/* logit_scale from the file's one-element "logit_scale" (shape [] or [1]); the tensor is
 * consumed even when the config gives the value, so that it does not count as unused. */
static dalle_status read_logit_scale(dalle_clip *m, dalle_safetensors *st, dalle_error *err) {
    const dalle_st_tensor *t = dalle_safetensors_find(st, "logit_scale");
    if (!t && !m->hp.logit_scale_from_weights)
        return DALLE_OK;
    if (!t)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: tensor 'logit_scale' is missing (needed while "
                               "clip.logit_scale_from_weights is true)",
                               st->label);
    if (t->numel != 1)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: tensor 'logit_scale' has %lld values, expected one", st->label,
                               (long long)t->numel);
    const dalle_st_tensor *taken;
    dalle_status s = dalle_safetensors_take(st, "logit_scale", t->ndim, t->shape, &taken, err);
    if (s == DALLE_OK && m->hp.logit_scale_from_weights)
        dalle_st_tensor_to_f32(taken, &m->hp.logit_scale);
    return s;
}

static dalle_status bind_all(dalle_clip *m, dalle_binder *b, dalle_safetensors *st,
                             dalle_error *err) {
    const dalle_clip_hparams *hp = &m->hp;
    dalle_status s;
    const int64_t Cv = hp->vision.width, Ct = hp->text.width, p = hp->patch_size;
    const int64_t Tv = (int64_t)(hp->image_size / p) * (hp->image_size / p) + 1;
    const int64_t cv[1] = {Cv}, vpos[2] = {Tv, Cv};
    const int64_t tok[2] = {hp->vocab_size, Ct}, tpos[2] = {hp->context_length, Ct};
    s = dalle_binder_take_conv(b, st, &m->patch_w, (int)Cv, 3, (int)p, err,
                               "vision_model.embeddings.patch_embedding.weight");
    if (s != DALLE_OK)
        return s;
    DALLE_TAKE(&m->class_emb, 1, cv, err, "vision_model.embeddings.class_embedding");
    DALLE_TAKE(&m->vision_pos, 2, vpos, err, "vision_model.embeddings.position_embedding.weight");
    DALLE_TAKE(&m->pre_ln_g, 1, cv, err, "vision_model.pre_layrnorm.weight");
    DALLE_TAKE(&m->pre_ln_b, 1, cv, err, "vision_model.pre_layrnorm.bias");
    DALLE_TAKE(&m->token_emb, 2, tok, err, "text_model.embeddings.token_embedding.weight");
    DALLE_TAKE(&m->text_pos, 2, tpos, err, "text_model.embeddings.position_embedding.weight");
    s = bind_tower(b, st, &m->vision, "vision_model", "post_layernorm", "visual_projection.weight",
                   hp->embed_dim, err);
    if (s == DALLE_OK)
        s = bind_tower(b, st, &m->text, "text_model", "final_layer_norm", "text_projection.weight",
                       hp->embed_dim, err);
    if (s != DALLE_OK)
        return s;
    if ((s = read_logit_scale(m, st, err)))
        return s;
    return dalle_safetensors_check_all_used(st, err);
}

dalle_status dalle_clip_load(dalle_clip *m, dalle_backend *be, const dalle_clip_hparams *hp,
                             const char *path, dalle_error *err) {
    memset(m, 0, sizeof *m);
    m->hp = *hp;
    m->be = be;
    m->vision.hp = hp->vision;
    m->text.hp = hp->text;
    dalle_safetensors st;
    dalle_binder b;
    dalle_binder_init(&b, be);
    dalle_status s = dalle_safetensors_open(&st, path, err);
    if (s == DALLE_OK)
        s = bind_all(m, &b, &st, err);
    if (s == DALLE_OK)
        s = dalle_binder_upload(&b, &m->block, err);
    m->weight_bytes = b.bytes;
    dalle_binder_free(&b);
    dalle_safetensors_close(&st);
    if (s != DALLE_OK) {
        dalle_clip_free(m);
        return s;
    }
    // the patch convolution as a matmul weight: [Cv, p, p, 3] read as [Cv, p·p·3]
    m->patch_w.ndim = 2;
    m->patch_w.shape[1] = (int64_t)hp->patch_size * hp->patch_size * 3;
    m->patch_w.shape[2] = m->patch_w.shape[3] = 0;
    m->score_scale = expf(m->hp.logit_scale);
    return DALLE_OK;
}

void dalle_clip_free(dalle_clip *m) {
    if (m->be && m->block)
        m->be->ops->free(m->be, m->block);
    free(m->vision.layers);
    free(m->text.layers);
    memset(m, 0, sizeof *m);
}

/* ---- work buffers ---------------------------------------------------------------- */

static int max_i(int a, int b) {
    return a > b ? a : b;
}

dalle_status dalle_clip_work_new(dalle_clip_work *w, const dalle_clip *m, dalle_backend *be,
                                 int max_images, dalle_error *err) {
    const dalle_clip_hparams *hp = &m->hp;
    DALLE_ASSERT(max_images >= 1);
    memset(w, 0, sizeof *w);
    w->be = be;
    w->max_images = max_images;
    const int S = hp->image_size, p = hp->patch_size, G = (S / p) * (S / p), Tv = G + 1;
    const size_t B = (size_t)max_images, Tt = (size_t)hp->context_length;
    const size_t rows = B * Tv > Tt ? B * Tv : Tt;
    const size_t C = (size_t)max_i(hp->vision.width, hp->text.width);
    const size_t F = (size_t)max_i(hp->vision.mlp_dim, hp->text.mlp_dim);
    struct {
        float **dst;
        size_t n;
    } bufs[] = {{&w->pixels, B * S * S * 3}, {&w->patches, B * S * S * 3},
                {&w->x, rows * C},           {&w->h, rows * C},
                {&w->q, rows * C},           {&w->k, rows * C},
                {&w->v, rows * C},           {&w->a, rows * C},
                {&w->f, rows * F},           {&w->pooled, B * C},
                {&w->emb, B * hp->embed_dim}};
    int ok = 1;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        ok &= (*bufs[i].dst = be->ops->alloc(be, bufs[i].n * sizeof(float))) != NULL;
    w->vision_ids = malloc(B * Tv * sizeof *w->vision_ids);
    w->text_pos = malloc(Tt * sizeof *w->text_pos);
    if (!ok || !w->vision_ids || !w->text_pos) {
        dalle_clip_work_free(w);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "cannot allocate CLIP work (%d images) on %s",
                               max_images, be->ops->name);
    }
    for (size_t r = 0; r < B * Tv; r++)
        w->vision_ids[r] = (int32_t)(r % Tv);
    for (size_t t = 0; t < Tt; t++)
        w->text_pos[t] = (int32_t)t;
    return DALLE_OK;
}

void dalle_clip_work_free(dalle_clip_work *w) {
    dalle_backend *be = w->be;
    if (!be)
        return;
    float *bufs[] = {w->pixels, w->patches, w->x, w->h,      w->q,  w->k,
                     w->v,      w->a,       w->f, w->pooled, w->emb};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    free(w->vision_ids);
    free(w->text_pos);
    memset(w, 0, sizeof *w);
}

/* ---- forward --------------------------------------------------------------------- */

/* y[N, n_out] = x[N, n_in] · Wᵀ + bias */
static void linear(dalle_clip_work *w, float *y, const float *x, const dalle_tensor *W,
                   const dalle_tensor *bias, int N, int n_out, int n_in) {
    w->be->ops->matmul(w->be, y, x, W, N, n_out, n_in, 0);
    w->be->ops->bias_add(w->be, y, bias, N, n_out);
}

/* The tower's blocks over w->x [B, T, C]; causal_pos NULL (vision) or {0} (text). */
static void blocks(const dalle_clip *m, dalle_clip_work *w, const dalle_clip_tower *tw, int B,
                   int T, const int32_t *causal_pos) {
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = tw->hp.width, F = tw->hp.mlp_dim, H = tw->hp.heads, N = B * T;
    const float eps = m->hp.layer_norm_eps;
    for (int l = 0; l < tw->hp.layers; l++) {
        const dalle_clip_layer *L = &tw->layers[l];
        op->layernorm(be, w->h, w->x, &L->ln1_g, &L->ln1_b, N, C, eps); // [B, T, C]
        linear(w, w->q, w->h, &L->q, &L->q_b, N, C, C);
        linear(w, w->k, w->h, &L->k, &L->k_b, N, C, C);
        linear(w, w->v, w->h, &L->v, &L->v_b, N, C, C);
        op->attention(be, w->a, w->q, w->k, w->v, NULL, NULL, causal_pos, B, T, T, T, H, C / H);
        linear(w, w->h, w->a, &L->o, &L->o_b, N, C, C);
        op->add(be, w->x, w->h, (int64_t)N * C);
        op->layernorm(be, w->h, w->x, &L->ln2_g, &L->ln2_b, N, C, eps);
        linear(w, w->f, w->h, &L->fc1, &L->fc1_b, N, F, C); // [B, T, F]
        op->quick_gelu(be, w->f, w->f, (int64_t)N * F);
        linear(w, w->h, w->f, &L->fc2, &L->fc2_b, N, C, F); // [B, T, C]
        op->add(be, w->x, w->h, (int64_t)N * C);
    }
}

void dalle_clip_image_embed(const dalle_clip *m, dalle_clip_work *w, const float *pixels, int B,
                            float *emb) {
    const dalle_clip_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int S = hp->image_size, p = hp->patch_size, G = (S / p) * (S / p), Tv = G + 1;
    const int C = hp->vision.width, K = p * p * 3, E = hp->embed_dim;
    const float eps = hp->layer_norm_eps;
    DALLE_ASSERT(B >= 1 && B <= w->max_images);

    if (pixels != w->pixels) // already there when the caller preprocessed on the backend
        op->to_device(be, w->pixels, pixels, (size_t)B * S * S * 3 * sizeof(float));
    op->patchify(be, w->patches, w->pixels, B, S, S, 3, p);                    // [B, G, K]
    op->embed(be, w->x, &m->vision_pos, w->vision_ids, NULL, NULL, B * Tv, C); // [B, Tv, C]
    for (int b = 0; b < B; b++) {
        float *xb = w->x + (size_t)b * Tv * C;
        op->bias_add(be, xb, &m->class_emb, 1, C); // token 0
        op->matmul(be, xb + C, w->patches + (size_t)b * G * K, &m->patch_w, G, C, K, 1);
    }
    op->layernorm(be, w->x, w->x, &m->pre_ln_g, &m->pre_ln_b, B * Tv, C, eps);
    blocks(m, w, &m->vision, B, Tv, NULL);
    for (int b = 0; b < B; b++)
        op->layernorm(be, w->pooled + (size_t)b * C, w->x + (size_t)b * Tv * C, &m->vision.final_g,
                      &m->vision.final_b, 1, C, eps);               // [B, C]
    op->matmul(be, w->emb, w->pooled, &m->vision.proj, B, E, C, 0); // [B, E]
    op->to_host(be, emb, w->emb, (size_t)B * E * sizeof(float));
}

dalle_status dalle_clip_text_embed(const dalle_clip *m, dalle_clip_work *w, const int32_t *ids,
                                   float *emb, dalle_error *err) {
    const dalle_clip_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = hp->text.width, E = hp->embed_dim;
    int eot = 0;
    for (int t = 0; t < hp->context_length; t++) {
        if (ids[t] < 0 || ids[t] >= hp->vocab_size)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                                   "CLIP text: id %d at position %d is outside the vocabulary "
                                   "(%d ids)",
                                   ids[t], t, hp->vocab_size);
        if (ids[t] > ids[eot])
            eot = t;
    }
    const int T = eot + 1, causal_pos[1] = {0};
    op->embed(be, w->x, &m->token_emb, ids, &m->text_pos, w->text_pos, T, C); // [T, C]
    blocks(m, w, &m->text, 1, T, causal_pos);
    op->layernorm(be, w->pooled, w->x + (size_t)eot * C, &m->text.final_g, &m->text.final_b, 1, C,
                  hp->layer_norm_eps);                            // [1, C]
    op->matmul(be, w->emb, w->pooled, &m->text.proj, 1, E, C, 0); // [1, E]
    op->to_host(be, emb, w->emb, (size_t)E * sizeof(float));
    return DALLE_OK;
}

/* ---- scores ---------------------------------------------------------------------- */

void dalle_clip_scores(const dalle_clip *m, const float *img, int B, const float *txt,
                       float *logits, int32_t *order) {
    const int E = m->hp.embed_dim;
    double tt = 0;
    for (int e = 0; e < E; e++)
        tt += (double)txt[e] * txt[e];
    for (int b = 0; b < B; b++) {
        const float *v = img + (size_t)b * E; // [E]
        double ii = 0, it = 0;
        for (int e = 0; e < E; e++) {
            ii += (double)v[e] * v[e];
            it += (double)v[e] * txt[e];
        }
        const double norm = sqrt(ii * tt);
        logits[b] = norm > 0 ? (float)(m->score_scale * (it / norm)) : 0.0f;
    }
    dalle_rank_order(logits, B, order);
}

void dalle_rank_order(const float *scores, int n, int32_t *order) {
    for (int b = 0; b < n; b++) { // insertion sort: n is a batch of images
        int j = b;
        for (; j > 0 && scores[order[j - 1]] < scores[b]; j--)
            order[j] = order[j - 1];
        order[j] = b;
    }
}
