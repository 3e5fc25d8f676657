/* bart.c — DalleBart encoder and cached decoder step (see bart.h; model spec §2).
 *
 * Every op goes through the backend seam, so this file is the only description of the
 * network for both backends. Order of operations per layer (NormFormer):
 *   x += LN(SelfAttn(LN_b(x)));  [decoder: x += LN(CrossAttn(LN_b(x), enc))];
 *   x += W2 · LN_b,F(gelu(W0 · LN_b(x)) ⊙ (W1 · LN_b(x)))
 */
#include "model/bart.h"

#include <string.h>

#include "common/error.h"
#include "model_loader/weights.h"

#define TAKE(t, ...) \
    do { if ((s = dalle_binder_take(b, st, (t), __VA_ARGS__)) != DALLE_OK) return s; } while (0)

static dalle_status bind_layer(dalle_binder *b, dalle_safetensors *st, dalle_bart_layer *L, int i,
                               int decoder, const dalle_bart_hparams *hp, dalle_error *err) {
    dalle_status s;
    const int64_t c[1] = {hp->d_model}, cc[2] = {hp->d_model, hp->d_model};
    const int64_t f[1] = {hp->glu_dim}, fc[2] = {hp->glu_dim, hp->d_model};
    const int64_t cf[2] = {hp->d_model, hp->glu_dim};
    TAKE(&L->pre_self_ln_b, 1, c, err, "layers.%d.pre_self_attn_layer_norm.bias", i);
    TAKE(&L->q, 2, cc, err, "layers.%d.self_attn.q_proj.weight", i);
    TAKE(&L->k, 2, cc, err, "layers.%d.self_attn.k_proj.weight", i);
    TAKE(&L->v, 2, cc, err, "layers.%d.self_attn.v_proj.weight", i);
    TAKE(&L->o, 2, cc, err, "layers.%d.self_attn.out_proj.weight", i);
    TAKE(&L->self_ln_g, 1, c, err, "layers.%d.self_attn_layer_norm.weight", i);
    TAKE(&L->self_ln_b, 1, c, err, "layers.%d.self_attn_layer_norm.bias", i);
    if (decoder) {
        TAKE(&L->pre_cross_ln_b, 1, c, err, "layers.%d.pre_encoder_attn_layer_norm.bias", i);
        TAKE(&L->cq, 2, cc, err, "layers.%d.encoder_attn.q_proj.weight", i);
        TAKE(&L->ck, 2, cc, err, "layers.%d.encoder_attn.k_proj.weight", i);
        TAKE(&L->cv, 2, cc, err, "layers.%d.encoder_attn.v_proj.weight", i);
        TAKE(&L->co, 2, cc, err, "layers.%d.encoder_attn.out_proj.weight", i);
        TAKE(&L->cross_ln_g, 1, c, err, "layers.%d.encoder_attn_layer_norm.weight", i);
        TAKE(&L->cross_ln_b, 1, c, err, "layers.%d.encoder_attn_layer_norm.bias", i);
    }
    TAKE(&L->glu_ln0_b, 1, c, err, "layers.%d.glu.ln0.bias", i);
    TAKE(&L->fc0, 2, fc, err, "layers.%d.glu.fc0.weight", i);
    TAKE(&L->fc1, 2, fc, err, "layers.%d.glu.fc1.weight", i);
    TAKE(&L->glu_ln1_b, 1, f, err, "layers.%d.glu.ln1.bias", i);
    TAKE(&L->fc2, 2, cf, err, "layers.%d.glu.fc2.weight", i);
    return DALLE_OK;
}

/* Bind one stack (encoder or decoder) of a file; the decoder also binds lm_head. */
static dalle_status bind_stack(dalle_binder *b, dalle_safetensors *st, dalle_bart_stack *S,
                               int decoder, dalle_bart *m, dalle_error *err) {
    const dalle_bart_hparams *hp = &m->hp;
    dalle_status s;
    const int64_t c[1] = {hp->d_model};
    const int64_t emb[2] = {decoder ? hp->lm_head_size : hp->text_vocab_size, hp->d_model};
    const int64_t pos[2] = {decoder ? hp->image_length : hp->text_length, hp->d_model};
    TAKE(&S->embed, 2, emb, err, "embed_tokens.weight");
    TAKE(&S->pos, 2, pos, err, "embed_positions.weight");
    TAKE(&S->emb_ln_g, 1, c, err, "layernorm_embedding.weight");
    TAKE(&S->emb_ln_b, 1, c, err, "layernorm_embedding.bias");
    TAKE(&S->final_ln_b, 1, c, err, "final_ln.bias");
    if (decoder) {
        const int64_t lm[2] = {hp->lm_head_size, hp->d_model};
        TAKE(&m->lm_head, 2, lm, err, "lm_head.weight");
    }
    S->n_layers = decoder ? hp->decoder_layers : hp->encoder_layers;
    S->layers = calloc((size_t)S->n_layers, sizeof *S->layers);
    if (!S->layers) return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < S->n_layers; i++)
        if ((s = bind_layer(b, st, &S->layers[i], i, decoder, hp, err)) != DALLE_OK) return s;
    return dalle_safetensors_check_all_used(st, err);
}
#undef TAKE

static dalle_status load_stack(dalle_bart *m, const char *path, int decoder, dalle_error *err) {
    dalle_safetensors st;
    dalle_binder b;
    dalle_binder_init(&b, m->be);
    dalle_status s = dalle_safetensors_open(&st, path, err);
    if (s == DALLE_OK) s = bind_stack(&b, &st, decoder ? &m->dec : &m->enc, decoder, m, err);
    if (s == DALLE_OK) s = dalle_binder_upload(&b, decoder ? &m->block_dec : &m->block_enc, err);
    dalle_binder_free(&b);
    dalle_safetensors_close(&st);
    return s;
}

dalle_status dalle_bart_load(dalle_bart *m, dalle_backend *be, const dalle_bart_hparams *hp,
                             const char *encoder_path, const char *decoder_path, dalle_error *err) {
    memset(m, 0, sizeof *m);
    m->hp = *hp;
    m->be = be;
    dalle_status s = load_stack(m, encoder_path, 0, err);
    if (s == DALLE_OK) s = load_stack(m, decoder_path, 1, err);
    if (s != DALLE_OK) dalle_bart_free(m);
    return s;
}

void dalle_bart_free(dalle_bart *m) {
    if (m->be) {
        if (m->block_enc) m->be->ops->free(m->be, m->block_enc);
        if (m->block_dec) m->be->ops->free(m->be, m->block_dec);
    }
    free(m->enc.layers);
    free(m->dec.layers);
    memset(m, 0, sizeof *m);
}

/* ---- work buffers ---------------------------------------------------------------- */

static float *work_alloc(dalle_backend *be, size_t n_floats, int *ok) {
    float *p = be->ops->alloc(be, n_floats * sizeof(float));
    if (!p) *ok = 0;
    return p;
}

static float **layer_alloc(dalle_backend *be, int L, size_t n_floats, int *ok) {
    float **v = calloc((size_t)L, sizeof *v);
    if (!v) {
        *ok = 0;
        return NULL;
    }
    for (int l = 0; l < L; l++) v[l] = work_alloc(be, n_floats, ok);
    return v;
}

dalle_status dalle_bart_work_new(dalle_bart_work *w, const dalle_bart *m, dalle_backend *be,
                                 int max_seqs, int max_rows, int max_blocks, dalle_error *err) {
    const dalle_bart_hparams *hp = &m->hp;
    DALLE_ASSERT(max_seqs >= 1 && max_rows >= 1 && max_blocks >= 1);
    memset(w, 0, sizeof *w);
    w->be = be;
    w->max_seqs = max_seqs;
    w->max_rows = max_rows;
    w->max_blocks = max_blocks;
    size_t rows = (size_t)max_seqs * hp->text_length;
    if ((size_t)max_rows > rows) rows = (size_t)max_rows;
    const size_t C = (size_t)hp->d_model, F = (size_t)hp->glu_dim, L = (size_t)hp->decoder_layers;
    int ok = 1;
    w->x = work_alloc(be, rows * C, &ok);
    w->h = work_alloc(be, rows * C, &ok);
    w->q = work_alloc(be, rows * C, &ok);
    w->k = work_alloc(be, rows * C, &ok);
    w->v = work_alloc(be, rows * C, &ok);
    w->a = work_alloc(be, rows * C, &ok);
    w->g = work_alloc(be, rows * F, &ok);
    w->u = work_alloc(be, rows * F, &ok);
    w->logits = work_alloc(be, (size_t)max_rows * hp->lm_head_size, &ok);
    const size_t self_sz = (size_t)max_rows * hp->image_length * C;
    const size_t cross_sz = (size_t)max_blocks * hp->text_length * C;
    w->self_k = layer_alloc(be, (int)L, self_sz, &ok);
    w->self_v = layer_alloc(be, (int)L, self_sz, &ok);
    w->cross_k = layer_alloc(be, (int)L, cross_sz, &ok);
    w->cross_v = layer_alloc(be, (int)L, cross_sz, &ok);
    w->cross_mask = calloc((size_t)max_blocks * hp->text_length, 1);
    w->pos_host = malloc((size_t)max_seqs * hp->text_length * sizeof *w->pos_host);
    if (!ok || !w->cross_mask || !w->pos_host) {
        w->n_layers_ = (int)L;
        dalle_bart_work_free(w);
        return dalle_error_set(err, DALLE_ERR_NOMEM,
                               "cannot allocate decoder work (%d rows, %d blocks) on %s", max_rows,
                               max_blocks, be->ops->name);
    }
    w->n_layers_ = (int)L;
    return DALLE_OK;
}

static void layer_free(dalle_backend *be, float **v, int L) {
    if (!v) return;
    for (int l = 0; l < L; l++)
        if (v[l]) be->ops->free(be, v[l]);
    free(v);
}

void dalle_bart_work_free(dalle_bart_work *w) {
    dalle_backend *be = w->be;
    if (!be) return;
    float *bufs[] = {w->x, w->h, w->q, w->k, w->v, w->a, w->g, w->u, w->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) be->ops->free(be, bufs[i]);
    layer_free(be, w->self_k, w->n_layers_);
    layer_free(be, w->self_v, w->n_layers_);
    layer_free(be, w->cross_k, w->n_layers_);
    layer_free(be, w->cross_v, w->n_layers_);
    free(w->cross_mask);
    free(w->pos_host);
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------------- */

/* x[N, C] += W2 · LN_b,F(gelu(W0·LN_b(x)) ⊙ W1·LN_b(x)) */
static void glu_block(const dalle_bart *m, dalle_bart_work *w, const dalle_bart_layer *L, int N) {
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = m->hp.d_model, F = m->hp.glu_dim;
    const float eps = m->hp.layer_norm_eps;
    op->layernorm(be, w->h, w->x, NULL, &L->glu_ln0_b, N, C, eps);   // [N, C]
    op->matmul(be, w->g, w->h, &L->fc0, N, F, C, 0);                 // [N, F]
    op->matmul(be, w->u, w->h, &L->fc1, N, F, C, 0);                 // [N, F]
    op->gelu_mul(be, w->g, w->g, w->u, (int64_t)N * F);
    op->layernorm(be, w->g, w->g, NULL, &L->glu_ln1_b, N, F, eps);
    op->matmul(be, w->x, w->g, &L->fc2, N, C, F, 1);                 // x += [N, C]
}

/* x[N, C] += LN(W_o · a) with the post-attention norm (g, b). Uses w->h. */
static void attn_out(const dalle_bart *m, dalle_bart_work *w, const dalle_tensor *Wo,
                     const dalle_tensor *g, const dalle_tensor *b, int N) {
    const dalle_backend_ops *op = w->be->ops;
    const int C = m->hp.d_model;
    op->matmul(w->be, w->h, w->a, Wo, N, C, C, 0);
    op->layernorm(w->be, w->h, w->h, g, b, N, C, m->hp.layer_norm_eps);
    op->add(w->be, w->x, w->h, (int64_t)N * C);
}

void dalle_bart_encode(const dalle_bart *m, dalle_bart_work *w, const int32_t *ids,
                       const uint8_t *mask, int S, float *out) {
    const dalle_bart_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int T = hp->text_length, C = hp->d_model, N = S * T;
    const float eps = hp->layer_norm_eps;
    DALLE_ASSERT(S >= 1 && S <= w->max_seqs);

    int32_t *pos = w->pos_host;
    for (int i = 0; i < N; i++) {
        pos[i] = i % T;
        DALLE_ASSERT(ids[i] >= 0 && ids[i] < hp->text_vocab_size);
    }
    op->embed(be, w->x, &m->enc.embed, ids, &m->enc.pos, pos, N, C);       // [S·T, C]
    op->layernorm(be, w->x, w->x, &m->enc.emb_ln_g, &m->enc.emb_ln_b, N, C, eps);
    for (int l = 0; l < m->enc.n_layers; l++) {
        const dalle_bart_layer *L = &m->enc.layers[l];
        op->layernorm(be, w->h, w->x, NULL, &L->pre_self_ln_b, N, C, eps);
        op->matmul(be, w->q, w->h, &L->q, N, C, C, 0);                     // [S, T, C]
        op->matmul(be, w->k, w->h, &L->k, N, C, C, 0);
        op->matmul(be, w->v, w->h, &L->v, N, C, C, 0);
        op->attention(be, w->a, w->q, w->k, w->v, NULL, mask, NULL, S, T, T, T, hp->heads,
                      C / hp->heads);
        attn_out(m, w, &L->o, &L->self_ln_g, &L->self_ln_b, N);
        glu_block(m, w, L, N);
    }
    op->layernorm(be, out, w->x, NULL, &m->enc.final_ln_b, N, C, eps);    // [S, T, C]
}

void dalle_bart_cross_kv(const dalle_bart *m, dalle_bart_work *w, const float *enc_out,
                         const uint8_t *mask, int block) {
    const dalle_bart_hparams *hp = &m->hp;
    const int T = hp->text_length, C = hp->d_model;
    DALLE_ASSERT(block >= 0 && block < w->max_blocks);
    const size_t off = (size_t)block * T * C;
    for (int l = 0; l < m->dec.n_layers; l++) {
        const dalle_bart_layer *L = &m->dec.layers[l];
        w->be->ops->matmul(w->be, w->cross_k[l] + off, enc_out, &L->ck, T, C, C, 0);  // [T, C]
        w->be->ops->matmul(w->be, w->cross_v[l] + off, enc_out, &L->cv, T, C, C, 0);
    }
    memcpy(w->cross_mask + (size_t)block * T, mask, (size_t)T);
}

void dalle_bart_decode_step(const dalle_bart *m, dalle_bart_work *w, const int32_t *token,
                            const int32_t *pos, const int32_t *slot, const int32_t *block, int R,
                            int n_logits) {
    const dalle_bart_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = hp->d_model, H = hp->heads, D = C / H, P = hp->image_length;
    const int T = hp->text_length;
    const float eps = hp->layer_norm_eps;
    DALLE_ASSERT(R >= 1 && R <= w->max_rows);
    DALLE_ASSERT(n_logits >= 1 && n_logits <= hp->lm_head_size);
    int max_pos = 0;
    for (int r = 0; r < R; r++) {
        DALLE_ASSERT(token[r] >= 0 && token[r] < hp->lm_head_size);
        DALLE_ASSERT(pos[r] >= 0 && pos[r] < P);
        DALLE_ASSERT(slot[r] >= 0 && slot[r] < w->max_rows);
        DALLE_ASSERT(block[r] >= 0 && block[r] < w->max_blocks);
        if (pos[r] > max_pos) max_pos = pos[r];
    }
    op->embed(be, w->x, &m->dec.embed, token, &m->dec.pos, pos, R, C);     // [R, C]
    op->layernorm(be, w->x, w->x, &m->dec.emb_ln_g, &m->dec.emb_ln_b, R, C, eps);
    for (int l = 0; l < m->dec.n_layers; l++) {
        const dalle_bart_layer *L = &m->dec.layers[l];
        // causal self-attention over the slot's cache
        op->layernorm(be, w->h, w->x, NULL, &L->pre_self_ln_b, R, C, eps);
        op->matmul(be, w->q, w->h, &L->q, R, C, C, 0);                     // [R, C]
        op->matmul(be, w->k, w->h, &L->k, R, C, C, 0);
        op->matmul(be, w->v, w->h, &L->v, R, C, C, 0);
        op->kv_store(be, w->self_k[l], w->k, slot, pos, R, 1, C, P);
        op->kv_store(be, w->self_v[l], w->v, slot, pos, R, 1, C, P);
        op->attention(be, w->a, w->q, w->self_k[l], w->self_v[l], slot, NULL, pos, R, 1,
                      max_pos + 1, P, H, D);
        attn_out(m, w, &L->o, &L->self_ln_g, &L->self_ln_b, R);
        // cross-attention over the row's prompt block
        op->layernorm(be, w->h, w->x, NULL, &L->pre_cross_ln_b, R, C, eps);
        op->matmul(be, w->q, w->h, &L->cq, R, C, C, 0);
        op->attention(be, w->a, w->q, w->cross_k[l], w->cross_v[l], block, w->cross_mask, NULL,
                      R, 1, T, T, H, D);
        attn_out(m, w, &L->co, &L->cross_ln_g, &L->cross_ln_b, R);
        glu_block(m, w, L, R);
    }
    op->layernorm(be, w->h, w->x, NULL, &m->dec.final_ln_b, R, C, eps);
    op->matmul(be, w->logits, w->h, &m->lm_head, R, n_logits, C, 0);       // [R, n_logits]
}
