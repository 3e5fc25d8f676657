/* bart.c — DalleBart encoder and cached decoder step (see bart.h; docs/model-spec.md §2).
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

static dalle_status bind_layer(dalle_binder *b, dalle_safetensors *st, dalle_bart_layer *L, int i,
                               int decoder, const dalle_bart_hparams *hp, dalle_error *err) {
    dalle_status s;
    const int64_t c[1] = {hp->d_model}, f[1] = {hp->glu_dim};
    DALLE_TAKE(&L->pre_self_ln_b, 1, c, err, "layers.%d.pre_self_attn_layer_norm.bias", i);
    DALLE_TAKE_MATMUL(&L->q, hp->d_model, hp->d_model, err, "layers.%d.self_attn.q_proj.weight", i);
    DALLE_TAKE_MATMUL(&L->k, hp->d_model, hp->d_model, err, "layers.%d.self_attn.k_proj.weight", i);
    DALLE_TAKE_MATMUL(&L->v, hp->d_model, hp->d_model, err, "layers.%d.self_attn.v_proj.weight", i);
    DALLE_TAKE_MATMUL(&L->o, hp->d_model, hp->d_model, err, "layers.%d.self_attn.out_proj.weight",
                      i);
    DALLE_TAKE(&L->self_ln_g, 1, c, err, "layers.%d.self_attn_layer_norm.weight", i);
    DALLE_TAKE(&L->self_ln_b, 1, c, err, "layers.%d.self_attn_layer_norm.bias", i);
    if (decoder) {
        DALLE_TAKE(&L->pre_cross_ln_b, 1, c, err, "layers.%d.pre_encoder_attn_layer_norm.bias", i);
        DALLE_TAKE_MATMUL(&L->cq, hp->d_model, hp->d_model, err,
                          "layers.%d.encoder_attn.q_proj.weight", i);
        DALLE_TAKE_MATMUL(&L->ck, hp->d_model, hp->d_model, err,
                          "layers.%d.encoder_attn.k_proj.weight", i);
        DALLE_TAKE_MATMUL(&L->cv, hp->d_model, hp->d_model, err,
                          "layers.%d.encoder_attn.v_proj.weight", i);
        DALLE_TAKE_MATMUL(&L->co, hp->d_model, hp->d_model, err,
                          "layers.%d.encoder_attn.out_proj.weight", i);
        DALLE_TAKE(&L->cross_ln_g, 1, c, err, "layers.%d.encoder_attn_layer_norm.weight", i);
        DALLE_TAKE(&L->cross_ln_b, 1, c, err, "layers.%d.encoder_attn_layer_norm.bias", i);
    }
    DALLE_TAKE(&L->glu_ln0_b, 1, c, err, "layers.%d.glu.ln0.bias", i);
    DALLE_TAKE_MATMUL(&L->fc0, hp->glu_dim, hp->d_model, err, "layers.%d.glu.fc0.weight", i);
    DALLE_TAKE_MATMUL(&L->fc1, hp->glu_dim, hp->d_model, err, "layers.%d.glu.fc1.weight", i);
    DALLE_TAKE(&L->glu_ln1_b, 1, f, err, "layers.%d.glu.ln1.bias", i);
    DALLE_TAKE_MATMUL(&L->fc2, hp->d_model, hp->glu_dim, err, "layers.%d.glu.fc2.weight", i);
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
    DALLE_TAKE(&S->embed, 2, emb, err, "embed_tokens.weight");
    DALLE_TAKE(&S->pos, 2, pos, err, "embed_positions.weight");
    DALLE_TAKE(&S->emb_ln_g, 1, c, err, "layernorm_embedding.weight");
    DALLE_TAKE(&S->emb_ln_b, 1, c, err, "layernorm_embedding.bias");
    DALLE_TAKE(&S->final_ln_b, 1, c, err, "final_ln.bias");
    if (decoder) {
        DALLE_TAKE_MATMUL(&m->lm_head, hp->lm_head_size, hp->d_model, err, "lm_head.weight");
    }
    S->n_layers = decoder ? hp->decoder_layers : hp->encoder_layers;
    S->layers = calloc((size_t)S->n_layers, sizeof *S->layers);
    if (!S->layers)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < S->n_layers; i++)
        if ((s = bind_layer(b, st, &S->layers[i], i, decoder, hp, err)) != DALLE_OK)
            return s;
    return dalle_safetensors_check_all_used(st, err);
}

static dalle_status load_stack(dalle_bart *m, const char *path, int decoder, dalle_error *err) {
    dalle_safetensors st;
    dalle_binder b;
    dalle_binder_init(&b, m->be);
    dalle_status s = dalle_safetensors_open(&st, path, err);
    if (s == DALLE_OK)
        s = bind_stack(&b, &st, decoder ? &m->dec : &m->enc, decoder, m, err);
    if (s == DALLE_OK)
        s = dalle_binder_upload(&b, decoder ? &m->block_dec : &m->block_enc, err);
    m->weight_bytes += b.bytes;
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
    if (s == DALLE_OK)
        s = load_stack(m, decoder_path, 1, err);
    if (s != DALLE_OK)
        dalle_bart_free(m);
    return s;
}

void dalle_bart_free(dalle_bart *m) {
    if (m->be) {
        if (m->block_enc)
            m->be->ops->free(m->be, m->block_enc);
        if (m->block_dec)
            m->be->ops->free(m->be, m->block_dec);
    }
    free(m->enc.layers);
    free(m->dec.layers);
    memset(m, 0, sizeof *m);
}

/* ---- work buffers ---------------------------------------------------------------- */

static float *work_alloc(dalle_backend *be, size_t n_floats, int *ok) {
    float *p = be->ops->alloc(be, n_floats * sizeof(float));
    if (!p)
        *ok = 0;
    return p;
}

static float **layer_alloc(dalle_backend *be, int L, size_t n_floats, int *ok) {
    float **v = calloc((size_t)L, sizeof *v);
    if (!v) {
        *ok = 0;
        return NULL;
    }
    for (int l = 0; l < L; l++)
        v[l] = work_alloc(be, n_floats, ok);
    return v;
}

/* L buffers of `bytes` each (the KV cache, in the backend's kv_dtype). */
static void **layer_alloc_bytes(dalle_backend *be, int L, size_t bytes, int *ok) {
    void **v = calloc((size_t)L, sizeof *v);
    if (!v) {
        *ok = 0;
        return NULL;
    }
    for (int l = 0; l < L; l++)
        if (!(v[l] = be->ops->alloc(be, bytes)))
            *ok = 0;
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
    w->rows_cap = 2;
    while (w->rows_cap < max_rows)
        w->rows_cap *= 2;
    size_t rows = (size_t)max_seqs * hp->text_length;
    if ((size_t)w->rows_cap > rows)
        rows = (size_t)w->rows_cap;
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
    w->logits = work_alloc(be, (size_t)w->rows_cap * hp->lm_head_size, &ok);
    /* one more slot than rows: the padding rows of a recorded step write there */
    const size_t kv_es = dalle_dtype_size(be->ops->kv_dtype);
    const size_t self_sz = (size_t)(max_rows + 1) * hp->image_length * C;
    const size_t cross_sz = (size_t)max_blocks * hp->text_length * C;
    w->self_k = layer_alloc_bytes(be, (int)L, self_sz * kv_es, &ok);
    w->self_v = layer_alloc_bytes(be, (int)L, self_sz * kv_es, &ok);
    w->cross_k = layer_alloc(be, (int)L, cross_sz, &ok);
    w->cross_v = layer_alloc(be, (int)L, cross_sz, &ok);
    w->cross_mask = calloc((size_t)max_blocks * hp->text_length, 1);
    w->pos_host = malloc((size_t)max_seqs * hp->text_length * sizeof *w->pos_host);
    w->step_host = calloc((size_t)4 * w->rows_cap, sizeof *w->step_host);
    w->cross_mask_dev = be->ops->alloc(be, (size_t)max_blocks * hp->text_length);
    w->step_dev = be->ops->alloc(be, (size_t)4 * w->rows_cap * sizeof *w->step_dev);
    w->codes_dev = be->ops->alloc(be, (size_t)max_rows * hp->image_length * sizeof *w->codes_dev);
    if (!w->cross_mask_dev || !w->step_dev || !w->codes_dev)
        ok = 0;
    if (ok)
        be->ops->to_device(be, w->cross_mask_dev, w->cross_mask,
                           (size_t)max_blocks * hp->text_length);
    if (!ok || !w->cross_mask || !w->pos_host || !w->step_host) {
        w->n_layers_ = (int)L;
        dalle_bart_work_free(w);
        return dalle_error_set(err, DALLE_ERR_NOMEM,
                               "cannot allocate decoder work (%d rows, %d blocks) on %s", max_rows,
                               max_blocks, be->ops->name);
    }
    w->n_layers_ = (int)L;
    return DALLE_OK;
}

static void layer_free(dalle_backend *be, void *vv, int L) {
    void **v = vv;
    if (!v)
        return;
    for (int l = 0; l < L; l++)
        if (v[l])
            be->ops->free(be, v[l]);
    free(v);
}

void dalle_bart_work_free(dalle_bart_work *w) {
    dalle_backend *be = w->be;
    if (!be)
        return;
    float *bufs[] = {w->x, w->h, w->q, w->k, w->v, w->a, w->g, w->u, w->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    layer_free(be, w->self_k, w->n_layers_);
    layer_free(be, w->self_v, w->n_layers_);
    layer_free(be, w->cross_k, w->n_layers_);
    layer_free(be, w->cross_v, w->n_layers_);
    for (int i = 0; i < DALLE_BART_GRAPHS; i++)
        if (w->graph[i])
            be->ops->graph_free(be, w->graph[i]);
    if (w->cross_mask_dev)
        be->ops->free(be, w->cross_mask_dev);
    if (w->step_dev)
        be->ops->free(be, w->step_dev);
    if (w->codes_dev)
        be->ops->free(be, w->codes_dev);
    free(w->cross_mask);
    free(w->pos_host);
    free(w->step_host);
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------------- */

/* x[N, C] += W2 · LN_b,F(gelu(W0·LN_b(x)) ⊙ W1·LN_b(x)) */
static void glu_block(const dalle_bart *m, dalle_bart_work *w, const dalle_bart_layer *L, int N) {
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = m->hp.d_model, F = m->hp.glu_dim;
    const float eps = m->hp.layer_norm_eps;
    op->layernorm(be, w->h, w->x, NULL, &L->glu_ln0_b, N, C, eps); // [N, C]
    op->matmul(be, w->g, w->h, &L->fc0, N, F, C, 0);               // [N, F]
    op->matmul(be, w->u, w->h, &L->fc1, N, F, C, 0);               // [N, F]
    op->gelu_mul(be, w->g, w->g, w->u, (int64_t)N * F);
    op->layernorm(be, w->g, w->g, NULL, &L->glu_ln1_b, N, F, eps);
    op->matmul(be, w->x, w->g, &L->fc2, N, C, F, 1); // x += [N, C]
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
    op->embed(be, w->x, &m->enc.embed, ids, &m->enc.pos, pos, N, C); // [S·T, C]
    op->layernorm(be, w->x, w->x, &m->enc.emb_ln_g, &m->enc.emb_ln_b, N, C, eps);
    for (int l = 0; l < m->enc.n_layers; l++) {
        const dalle_bart_layer *L = &m->enc.layers[l];
        op->layernorm(be, w->h, w->x, NULL, &L->pre_self_ln_b, N, C, eps);
        op->matmul(be, w->q, w->h, &L->q, N, C, C, 0); // [S, T, C]
        op->matmul(be, w->k, w->h, &L->k, N, C, C, 0);
        op->matmul(be, w->v, w->h, &L->v, N, C, C, 0);
        op->attention(be, w->a, w->q, w->k, w->v, NULL, mask, NULL, S, T, T, T, hp->heads,
                      C / hp->heads);
        attn_out(m, w, &L->o, &L->self_ln_g, &L->self_ln_b, N);
        glu_block(m, w, L, N);
    }
    op->layernorm(be, out, w->x, NULL, &m->enc.final_ln_b, N, C, eps); // [S, T, C]
}

void dalle_bart_cross_kv(const dalle_bart *m, dalle_bart_work *w, const float *enc_out,
                         const uint8_t *mask, int block) {
    const dalle_bart_hparams *hp = &m->hp;
    const int T = hp->text_length, C = hp->d_model;
    DALLE_ASSERT(block >= 0 && block < w->max_blocks);
    const size_t off = (size_t)block * T * C;
    for (int l = 0; l < m->dec.n_layers; l++) {
        const dalle_bart_layer *L = &m->dec.layers[l];
        w->be->ops->matmul(w->be, w->cross_k[l] + off, enc_out, &L->ck, T, C, C, 0); // [T, C]
        w->be->ops->matmul(w->be, w->cross_v[l] + off, enc_out, &L->cv, T, C, C, 0);
    }
    memcpy(w->cross_mask + (size_t)block * T, mask, (size_t)T);
    w->be->ops->to_device(w->be, w->cross_mask_dev + (size_t)block * T, mask, (size_t)T);
}

/* The decoder step on R rows from the indices in w->step_dev (token, pos, slot, block at
 * offsets 0, rows_cap, 2·rows_cap, 3·rows_cap): only device-index ops, matmul, layernorm,
 * add and gelu_mul, so that the backend can record it. */
static void decode_step_dev(const dalle_bart *m, dalle_bart_work *w, int R, int n_logits) {
    const dalle_bart_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    const int C = hp->d_model, H = hp->heads, D = C / H, P = hp->image_length;
    const int T = hp->text_length, rc = w->rows_cap;
    const float eps = hp->layer_norm_eps;
    const int32_t *tok = w->step_dev, *pos = tok + rc, *slot = pos + rc, *block = slot + rc;
    op->embed_dev(be, w->x, &m->dec.embed, tok, &m->dec.pos, pos, R, C); // [R, C]
    op->layernorm(be, w->x, w->x, &m->dec.emb_ln_g, &m->dec.emb_ln_b, R, C, eps);
    for (int l = 0; l < m->dec.n_layers; l++) {
        const dalle_bart_layer *L = &m->dec.layers[l];
        // causal self-attention over the slot's cache, K/V appended at pos
        op->layernorm(be, w->h, w->x, NULL, &L->pre_self_ln_b, R, C, eps);
        op->matmul(be, w->q, w->h, &L->q, R, C, C, 0); // [R, C]
        op->matmul(be, w->k, w->h, &L->k, R, C, C, 0);
        op->matmul(be, w->v, w->h, &L->v, R, C, C, 0);
        op->decode_attention(be, w->a, w->q, w->k, w->v, w->self_k[l], w->self_v[l], slot, pos, R,
                             P, H, D);
        attn_out(m, w, &L->o, &L->self_ln_g, &L->self_ln_b, R);
        // cross-attention over the row's prompt block
        op->layernorm(be, w->h, w->x, NULL, &L->pre_cross_ln_b, R, C, eps);
        op->matmul(be, w->q, w->h, &L->cq, R, C, C, 0);
        op->cross_attention(be, w->a, w->q, w->cross_k[l], w->cross_v[l], block, w->cross_mask_dev,
                            R, T, H, D);
        attn_out(m, w, &L->co, &L->cross_ln_g, &L->cross_ln_b, R);
        glu_block(m, w, L, R);
    }
    op->layernorm(be, w->h, w->x, NULL, &m->dec.final_ln_b, R, C, eps);
    op->matmul(be, w->logits, w->h, &m->lm_head, R, n_logits, C, 0); // [R, n_logits]
}

/* Replay or record the step for bucket `rows` (a power of two); 1 when it ran. */
static int decode_step_graph(const dalle_bart *m, dalle_bart_work *w, int rows, int n_logits) {
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    int gi = 0;
    while ((1 << gi) < rows)
        gi++;
    DALLE_ASSERT(gi < DALLE_BART_GRAPHS);
    void **g = &w->graph[gi];
    if (*g && (w->graph_rows[gi] != rows || w->graph_logits[gi] != n_logits)) {
        op->graph_free(be, *g);
        *g = NULL;
        w->graph_warm[gi] = 0;
    }
    if (*g) {
        if (op->graph_launch(be, *g))
            return 1;
        op->graph_free(be, *g); /* stale: a scratch buffer moved; warm up and record again */
        *g = NULL;
        w->graph_warm[gi] = 0;
    }
    if (!w->graph_warm[gi]) { /* first run of this bucket: eager, grows the backend scratch */
        w->graph_warm[gi] = 1;
        return 0;
    }
    if (!op->graph_begin(be)) {
        w->no_graph = 1;
        return 0;
    }
    decode_step_dev(m, w, rows, n_logits);
    *g = op->graph_end(be);
    if (!*g) { /* recording failed (a scratch had to grow, or the backend said why) */
        w->graph_warm[gi] = 0;
        if (++w->graph_failures >= 3)
            w->no_graph = 1; /* persistent: stay eager */
        return 0;
    }
    w->graph_rows[gi] = rows;
    w->graph_logits[gi] = n_logits;
    if (op->graph_launch(be, *g))
        return 1;
    op->graph_free(be, *g);
    *g = NULL;
    w->graph_warm[gi] = 0;
    return 0;
}

void dalle_bart_decode_step(const dalle_bart *m, dalle_bart_work *w, const int32_t *token,
                            const int32_t *pos, const int32_t *slot, const int32_t *block, int R,
                            int n_logits) {
    const dalle_bart_hparams *hp = &m->hp;
    const dalle_backend_ops *op = w->be->ops;
    dalle_backend *be = w->be;
    DALLE_ASSERT(R >= 1 && R <= w->max_rows);
    DALLE_ASSERT(n_logits >= 1 && n_logits <= hp->lm_head_size);
    for (int r = 0; r < R; r++) {
        DALLE_ASSERT(!token || (token[r] >= 0 && token[r] < hp->lm_head_size));
        DALLE_ASSERT(pos[r] >= 0 && pos[r] < hp->image_length);
        DALLE_ASSERT(slot[r] >= 0 && slot[r] < w->max_rows);
        DALLE_ASSERT(block[r] >= 0 && block[r] < w->max_blocks);
    }
    const int record = op->graph_begin && !w->no_graph;
    int rows = R; /* recorded steps run a power-of-two bucket of rows */
    if (record) {
        rows = 2;
        while (rows < R)
            rows *= 2;
    }
    DALLE_ASSERT(rows <= w->rows_cap);
    const int rc = w->rows_cap;
    int32_t *sh = w->step_host;
    for (int r = 0; r < rows; r++) {
        const int pad = r >= R; /* padding: start token at 0 into the spare slot, block 0 */
        sh[r] = pad ? hp->start_token : token ? token[r] : 0;
        sh[rc + r] = pad ? 0 : pos[r];
        sh[2 * rc + r] = pad ? w->max_rows : slot[r];
        sh[3 * rc + r] = pad ? 0 : block[r];
    }
    if (token) {
        op->to_device(be, w->step_dev, sh, (size_t)4 * rc * sizeof *sh);
    } else { /* token rows [0, R) are on the device already (sample_dev) */
        op->to_device(be, w->step_dev + rc, sh + rc, (size_t)3 * rc * sizeof *sh);
        if (rows > R)
            op->to_device(be, w->step_dev + R, sh + R, (size_t)(rows - R) * sizeof *sh);
    }
    if (record && decode_step_graph(m, w, rows, n_logits))
        return;
    decode_step_dev(m, w, rows, n_logits);
}
