/* pipeline.c — the public engine API (dalle.h): model directory → model; prompt → text ids
 * → encoder → guided decode → image codes.
 *
 * Model/state split: dalle_model holds the config, the weights (in the model backend),
 * the tokenizers and the unconditional encoder output; it is never written after load.
 * dalle_state owns a compute backend, the BART work buffers (KV cache, cross K/V blocks,
 * activations) and the per-step host arrays. Cross-attention block 0 of every state holds
 * the unconditional branch (projected once at state creation); block 1 the current prompt.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "dalle.h"
#include "kernels/ops.h"
#include "model/bart.h"
#include "model/text/bart_tokenizer.h"
#include "model/text/clip_tokenizer.h"
#include "model/text/normalize.h"
#include "model_loader/model_config.h"

#define CLIP_MERGES 48894 /* merge lines used by the released CLIP models */
#define UNCOND_BLOCK 0
#define PROMPT_BLOCK 1

struct dalle_model {
    dalle_model_config cfg;
    dalle_model_params params;
    dalle_backend *be;          /* owns the weights */
    dalle_bart bart;
    dalle_normalizer *normalizer;
    dalle_bart_tokenizer *bpe;
    dalle_clip_tokenizer *clip_bpe; /* NULL when the model has no CLIP merges */
    float *uncond_enc;          /* host [T, C] encoder output of <s></s><pad>… */
    uint8_t *uncond_mask;       /* host [T] */
};

struct dalle_state {
    const dalle_model *m;
    dalle_backend *be;
    dalle_bart_work work;
    int max_images;
    float *enc_out;             /* backend [T, C] */
    int32_t *token, *pos, *slot, *block; /* host [2·max_images] decoder row arrays */
    dalle_sample_params *sp;    /* host [max_images] */
    int32_t *step, *sampled;    /* host [max_images] */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static dalle_backend *backend_new(const dalle_model_params *p, dalle_error *err) {
    if (p->backend == NULL || strcmp(p->backend, "cpu") == 0) {
        dalle_backend *be = dalle_backend_cpu_new(p->threads);
        if (!be) dalle_error_set(err, DALLE_ERR_NOMEM, "cannot create the cpu backend");
        return be;
    }
    dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "unknown backend '%s' (this build has: cpu)",
                    p->backend);
    return NULL;
}

void dalle_model_params_default(dalle_model_params *p) {
    p->backend = "cpu";
    p->threads = 0;
}

/* DIR/name into buf; names were validated by the config parser (no '/'). */
static const char *model_path(char *buf, size_t n, const char *dir, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Encode the unconditional row [bos, eos, pad…] once; keep it on the host. */
static dalle_status encode_uncond(dalle_model *m, dalle_error *err) {
    const dalle_bart_hparams *hp = &m->cfg.bart;
    const int T = hp->text_length, C = hp->d_model;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    m->uncond_mask = calloc((size_t)T, 1);
    m->uncond_enc = malloc((size_t)T * C * sizeof(float));
    if (!ids || !m->uncond_mask || !m->uncond_enc) {
        free(ids);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < T; i++) ids[i] = m->cfg.text.pad_id;
    ids[0] = m->cfg.text.bos_id;
    ids[1] = m->cfg.text.eos_id;
    m->uncond_mask[0] = m->uncond_mask[1] = 1;

    dalle_bart_work w;
    dalle_status s = dalle_bart_work_new(&w, &m->bart, m->be, 1, 1, 1, err);
    if (s == DALLE_OK) {
        float *out = m->be->ops->alloc(m->be, (size_t)T * C * sizeof(float));
        if (out) {
            dalle_bart_encode(&m->bart, &w, ids, m->uncond_mask, 1, out);
            m->be->ops->to_host(m->be, m->uncond_enc, out, (size_t)T * C * sizeof(float));
            m->be->ops->free(m->be, out);
        } else {
            s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
        }
        dalle_bart_work_free(&w);
    }
    free(ids);
    return s;
}

static dalle_status load_text(dalle_model *m, const char *dir, dalle_error *err) {
    char a[PATH_MAX], b[PATH_MAX];
    const dalle_model_config *c = &m->cfg;
    dalle_status s = dalle_bart_tokenizer_load(&m->bpe, model_path(a, sizeof a, dir, c->vocab_file),
                                               model_path(b, sizeof b, dir, c->merges_file), err);
    if (s != DALLE_OK) return s;
    if (dalle_bart_tokenizer_vocab_size(m->bpe) > c->bart.text_vocab_size + 1)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %d entries, but the encoder embeds only %d ids", c->vocab_file,
                               dalle_bart_tokenizer_vocab_size(m->bpe), c->bart.text_vocab_size);
    s = dalle_normalizer_new(&m->normalizer,
                             c->wiki_words_file[0]
                                 ? model_path(a, sizeof a, dir, c->wiki_words_file)
                                 : NULL,
                             err);
    if (s != DALLE_OK || !c->clip_merges_file[0]) return s;
    return dalle_clip_tokenizer_load(&m->clip_bpe,
                                     model_path(a, sizeof a, dir, c->clip_merges_file), CLIP_MERGES,
                                     err);
}

dalle_status dalle_model_load(dalle_model **out, const char *dir, const dalle_model_params *p,
                              dalle_error *err) {
    *out = NULL;
    dalle_model *m = calloc(1, sizeof *m);
    if (!m) return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    if (p) m->params = *p;
    else dalle_model_params_default(&m->params);

    char enc[PATH_MAX], dec[PATH_MAX];
    dalle_status s = dalle_model_config_load(&m->cfg, dir, err);
    if (s == DALLE_OK) s = load_text(m, dir, err);
    if (s == DALLE_OK && !(m->be = backend_new(&m->params, err))) s = err ? err->status : DALLE_ERR_NOMEM;
    if (s == DALLE_OK)
        s = dalle_bart_load(&m->bart, m->be, &m->cfg.bart,
                            model_path(enc, sizeof enc, dir, m->cfg.encoder_file),
                            model_path(dec, sizeof dec, dir, m->cfg.decoder_file), err);
    if (s == DALLE_OK) s = encode_uncond(m, err);
    if (s != DALLE_OK) {
        dalle_model_free(m);
        return s;
    }
    *out = m;
    return DALLE_OK;
}

void dalle_model_free(dalle_model *m) {
    if (!m) return;
    dalle_bart_free(&m->bart);
    if (m->be) m->be->ops->destroy(m->be);
    dalle_normalizer_free(m->normalizer);
    dalle_bart_tokenizer_free(m->bpe);
    dalle_clip_tokenizer_free(m->clip_bpe);
    dalle_model_config_free(&m->cfg);
    free(m->uncond_enc);
    free(m->uncond_mask);
    free(m);
}

void dalle_model_get_info(const dalle_model *m, dalle_model_info *info) {
    const dalle_bart_hparams *hp = &m->cfg.bart;
    *info = (dalle_model_info){
        .name = m->cfg.name,
        .backend = m->be->ops->name,
        .d_model = hp->d_model,
        .encoder_layers = hp->encoder_layers,
        .decoder_layers = hp->decoder_layers,
        .heads = hp->heads,
        .glu_dim = hp->glu_dim,
        .text_vocab_size = hp->text_vocab_size,
        .text_length = hp->text_length,
        .image_vocab_size = hp->image_vocab_size,
        .image_length = hp->image_length,
        .start_token = hp->start_token,
        .normalize_text = m->cfg.text.normalize,
        .has_clip_tokenizer = m->clip_bpe != NULL,
    };
}

/* ---- text ----------------------------------------------------------------------- */

dalle_status dalle_text_encode(const dalle_model *m, const char *prompt, size_t n, dalle_text *out,
                               dalle_error *err) {
    memset(out, 0, sizeof *out);
    if (n > DALLE_MAX_PROMPT_BYTES)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "prompt is %zu bytes; the limit is %d",
                               n, DALLE_MAX_PROMPT_BYTES);
    if (memchr(prompt, 0, n))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "prompt contains a NUL character");
    const int T = m->cfg.bart.text_length;
    dalle_status s;
    if (m->cfg.text.normalize) {
        s = dalle_text_normalize(m->normalizer, prompt, n, &out->normalized, err);
    } else {
        out->normalized = strndup(prompt, n);
        s = out->normalized ? DALLE_OK : dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    out->text_length = T;
    out->ids = malloc((size_t)T * sizeof *out->ids);
    out->mask = malloc((size_t)T);
    if (s == DALLE_OK && (!out->ids || !out->mask))
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    if (s == DALLE_OK)
        s = dalle_bart_tokenize(m->bpe, out->normalized, strlen(out->normalized), T, out->ids,
                                out->mask, &out->n_ids, err);
    for (int i = 0; s == DALLE_OK && i < T; i++)
        if (out->ids[i] >= m->cfg.bart.text_vocab_size)
            s = dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                                "prompt token %d has no embedding in this model", out->ids[i]);
    if (s == DALLE_OK && m->clip_bpe)
        s = dalle_clip_tokenize(m->clip_bpe, prompt, n, DALLE_CLIP_TEXT_LENGTH, out->clip_ids,
                                &out->n_clip, err);
    if (s != DALLE_OK) dalle_text_free(out);
    return s;
}

void dalle_text_free(dalle_text *t) {
    free(t->normalized);
    free(t->ids);
    free(t->mask);
    memset(t, 0, sizeof *t);
}

/* ---- generation ------------------------------------------------------------------ */

void dalle_gen_params_default(const dalle_model *m, dalle_gen_params *p) {
    *p = (dalle_gen_params){
        .n_images = 1,
        .seed = 0,
        .cond_scale = m->cfg.gen.cond_scale,
        .temperature = m->cfg.gen.temperature,
        .top_p = m->cfg.gen.top_p,
        .top_k = m->cfg.gen.top_k,
    };
}

dalle_status dalle_gen_params_check(const dalle_model *m, const dalle_gen_params *p,
                                    int max_images, dalle_error *err) {
    const dalle_status bad = DALLE_ERR_INVALID_ARG;
    if (p->n_images < 1 || p->n_images > max_images)
        return dalle_error_set(err, bad, "n must be in [1, %d], got %d", max_images, p->n_images);
    if (!isfinite(p->cond_scale) || p->cond_scale < 0 || p->cond_scale > 1000)
        return dalle_error_set(err, bad, "cond_scale must be in [0, 1000], got %g", p->cond_scale);
    if (!isfinite(p->temperature) || p->temperature <= 0 || p->temperature > 100)
        return dalle_error_set(err, bad, "temperature must be in (0, 100], got %g", p->temperature);
    if (!isfinite(p->top_p) || p->top_p <= 0 || p->top_p > 1)
        return dalle_error_set(err, bad, "top_p must be in (0, 1], got %g", p->top_p);
    if (p->top_k < 1 || p->top_k > m->cfg.bart.image_vocab_size)
        return dalle_error_set(err, bad, "top_k must be in [1, %d], got %d",
                               m->cfg.bart.image_vocab_size, p->top_k);
    return DALLE_OK;
}

dalle_status dalle_state_new(dalle_state **out, const dalle_model *m, const dalle_state_params *p,
                             dalle_error *err) {
    *out = NULL;
    const int max_images = p && p->max_images > 0 ? p->max_images : 1;
    const int T = m->cfg.bart.text_length, C = m->cfg.bart.d_model, R = 2 * max_images;
    dalle_state *s = calloc(1, sizeof *s);
    if (!s) return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    s->m = m;
    s->max_images = max_images;
    dalle_status st = DALLE_OK;
    if (!(s->be = backend_new(&m->params, err))) st = err ? err->status : DALLE_ERR_NOMEM;
    if (st == DALLE_OK) st = dalle_bart_work_new(&s->work, &m->bart, s->be, 1, R, 2, err);
    if (st == DALLE_OK) {
        s->enc_out = s->be->ops->alloc(s->be, (size_t)T * C * sizeof(float));
        s->token = malloc((size_t)R * sizeof(int32_t));
        s->pos = malloc((size_t)R * sizeof(int32_t));
        s->slot = malloc((size_t)R * sizeof(int32_t));
        s->block = malloc((size_t)R * sizeof(int32_t));
        s->sp = malloc((size_t)max_images * sizeof *s->sp);
        s->step = malloc((size_t)max_images * sizeof(int32_t));
        s->sampled = malloc((size_t)max_images * sizeof(int32_t));
        if (!s->enc_out || !s->token || !s->pos || !s->slot || !s->block || !s->sp || !s->step ||
            !s->sampled)
            st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    if (st == DALLE_OK) {
        s->be->ops->to_device(s->be, s->enc_out, m->uncond_enc, (size_t)T * C * sizeof(float));
        dalle_bart_cross_kv(&m->bart, &s->work, s->enc_out, m->uncond_mask, UNCOND_BLOCK);
        s->be->ops->sync(s->be);
    }
    if (st != DALLE_OK) {
        dalle_state_free(s);
        return st;
    }
    *out = s;
    return DALLE_OK;
}

void dalle_state_free(dalle_state *s) {
    if (!s) return;
    dalle_bart_work_free(&s->work);
    if (s->be) {
        if (s->enc_out) s->be->ops->free(s->be, s->enc_out);
        s->be->ops->destroy(s->be);
    }
    free(s->token);
    free(s->pos);
    free(s->slot);
    free(s->block);
    free(s->sp);
    free(s->step);
    free(s->sampled);
    free(s);
}

/* Decode all image_length codes of n images: rows 2i (cond) and 2i+1 (uncond). */
static dalle_status decode_images(dalle_state *s, const dalle_gen_params *p, int32_t *codes) {
    const dalle_model *m = s->m;
    const dalle_bart_hparams *hp = &m->cfg.bart;
    const int n = p->n_images, R = 2 * n, P = hp->image_length, V = hp->image_vocab_size;
    for (int i = 0; i < n; i++) {
        s->sp[i] = (dalle_sample_params){p->cond_scale, p->temperature, p->top_p, p->top_k,
                                         p->seed, (uint32_t)i};
        for (int c = 0; c < 2; c++) {
            s->token[2 * i + c] = hp->start_token;
            s->slot[2 * i + c] = 2 * i + c;
            s->block[2 * i + c] = c == 0 ? PROMPT_BLOCK : UNCOND_BLOCK;
        }
    }
    for (int t = 0; t < P; t++) {
        if (p->should_stop && p->should_stop(p->user)) return DALLE_ERR_CANCELLED;
        for (int r = 0; r < R; r++) s->pos[r] = t;
        for (int i = 0; i < n; i++) s->step[i] = t;
        dalle_bart_decode_step(&m->bart, &s->work, s->token, s->pos, s->slot, s->block, R, V);
        s->be->ops->sample(s->be, s->sampled, s->work.logits, n, V, V, s->sp, s->step);
        for (int i = 0; i < n; i++) {
            codes[(size_t)i * P + t] = s->sampled[i];
            s->token[2 * i] = s->token[2 * i + 1] = s->sampled[i];
        }
    }
    return DALLE_OK;
}

dalle_status dalle_generate_codes_text(dalle_state *s, const dalle_text *text,
                                       const dalle_gen_params *p, int32_t *codes,
                                       dalle_timings *timings, dalle_error *err) {
    const dalle_model *m = s->m;
    const dalle_bart_hparams *hp = &m->cfg.bart;
    dalle_status st = dalle_gen_params_check(m, p, s->max_images, err);
    if (st != DALLE_OK) return st;
    if (text->text_length != hp->text_length)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text has %d positions, model wants %d",
                               text->text_length, hp->text_length);
    for (int i = 0; i < hp->text_length; i++)
        if (text->ids[i] < 0 || text->ids[i] >= hp->text_vocab_size)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text id %d out of range [0, %d)",
                                   text->ids[i], hp->text_vocab_size);
    if (!text->mask[0])
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text mask hides the first token");
    double t1 = now_ms();
    dalle_bart_encode(&m->bart, &s->work, text->ids, text->mask, 1, s->enc_out);
    dalle_bart_cross_kv(&m->bart, &s->work, s->enc_out, text->mask, PROMPT_BLOCK);
    s->be->ops->sync(s->be);
    double t2 = now_ms();
    st = decode_images(s, p, codes);
    double t3 = now_ms();
    if (st == DALLE_ERR_CANCELLED) return dalle_error_set(err, st, "generation cancelled");
    if (timings) *timings = (dalle_timings){0, t2 - t1, t3 - t2};
    return DALLE_OK;
}

dalle_status dalle_generate_codes(dalle_state *s, const char *prompt, size_t n,
                                  const dalle_gen_params *p, int32_t *codes, dalle_timings *timings,
                                  dalle_error *err) {
    dalle_status st = dalle_gen_params_check(s->m, p, s->max_images, err);
    if (st != DALLE_OK) return st;
    double t0 = now_ms();
    dalle_text text;
    st = dalle_text_encode(s->m, prompt, n, &text, err);
    if (st != DALLE_OK) return st;
    double text_ms = now_ms() - t0;
    st = dalle_generate_codes_text(s, &text, p, codes, timings, err);
    dalle_text_free(&text);
    if (st == DALLE_OK && timings) timings->text_ms = text_ms;
    return st;
}
