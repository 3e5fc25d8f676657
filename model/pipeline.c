/* pipeline.c — the engine's model and state lifecycle and its text stage (dalle.h):
 * model directory → model (config, BART, optional VQGAN and CLIP, tokenizers, the
 * unconditional encoder output); prompt → normalized text, BART ids, CLIP ids; per-worker
 * states with every buffer preallocated. Generation itself is in generate.c; the shared
 * structures and the model/state contract are in pipeline_impl.h.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "kernels/cpu/cpu.h"
#include "kernels/fault.h"
#include "model/pipeline_impl.h"
#ifdef DALLE_WITH_CUDA
#include "kernels/cuda/cuda.h"
#endif

#define CLIP_MERGES 48894 /* merge lines used by the released CLIP models */

double dalle_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int dalle_backend_device_count(const char *backend) {
    if (!backend || strcmp(backend, "cpu") == 0)
        return 1;
#ifdef DALLE_WITH_CUDA
    if (strcmp(backend, "cuda") == 0)
        return dalle_cuda_device_count();
#endif
    return 0;
}

void dalle_backends_describe(char *out, size_t size) {
    char names[64];
    dalle_cpu_gemm_names(names, sizeof names);
    const dalle_cpu_gemm_variant *v = dalle_cpu_gemm_pick(NULL);
#ifdef DALLE_WITH_CUDA
    const char *cuda = ", cuda";
#else
    const char *cuda = "";
#endif
    snprintf(out, size, "cpu (GEMM %s; this CPU: %s)%s", names, v ? v->name : "none", cuda);
}

/* A backend by name and device, with fault injection armed when DALLE_FAULT_INJECT asks.
 * The status is right even when the caller passes no dalle_error. */
static dalle_status backend_new(const dalle_model_params *p, dalle_backend **out,
                                dalle_error *err) {
    dalle_error e = {0};
    *out = NULL;
    if (p->backend == NULL || strcmp(p->backend, "cpu") == 0) {
        if (p->device != 0)
            dalle_error_set(&e, DALLE_ERR_INVALID_ARG, "the cpu backend has device 0 only");
        else if ((*out = dalle_backend_cpu_new(p->threads)))
            e.status = DALLE_OK;
        else
            dalle_error_set(&e, DALLE_ERR_NOMEM, "cannot create the cpu backend");
    }
#ifdef DALLE_WITH_CUDA
    else if (strcmp(p->backend, "cuda") == 0) {
        const int dt = dalle_cuda_weight_dtype_from_env();
        if (dt < 0)
            dalle_error_set(&e, DALLE_ERR_INVALID_ARG,
                            "DALLE_CUDA_WEIGHTS must be f32, f16 or bf16");
        else if ((*out = dalle_backend_cuda_new(p->device, (dalle_dtype)dt, &e)))
            e.status = DALLE_OK;
        else if (e.status == DALLE_OK)
            dalle_error_set(&e, DALLE_ERR_BACKEND, "cannot create the cuda backend");
    } else {
        dalle_error_set(&e, DALLE_ERR_UNSUPPORTED,
                        "unknown backend '%s' (this build has: cpu, cuda)", p->backend);
    }
#else
    else {
        dalle_error_set(&e, DALLE_ERR_UNSUPPORTED, "unknown backend '%s' (this build has: cpu)",
                        p->backend);
    }
#endif
    if (*out && dalle_fault_inject_arm(*out, &e) != DALLE_OK) {
        (*out)->ops->destroy(*out);
        *out = NULL;
    }
    if (err && e.status != DALLE_OK)
        *err = e;
    return e.status;
}

void dalle_model_params_default(dalle_model_params *p) {
    p->backend = "cpu";
    p->threads = 0;
    p->device = 0;
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
    for (int i = 0; i < T; i++)
        ids[i] = m->cfg.text.pad_id;
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
            if (m->be->failed != DALLE_OK)
                s = dalle_error_set(err, m->be->failed, "out of memory (backend working memory)");
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
    if (s != DALLE_OK)
        return s;
    if (dalle_bart_tokenizer_vocab_size(m->bpe) > c->bart.text_vocab_size + 1)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %d entries, but the encoder embeds only %d ids", c->vocab_file,
                               dalle_bart_tokenizer_vocab_size(m->bpe), c->bart.text_vocab_size);
    s = dalle_normalizer_new(
        &m->normalizer,
        c->wiki_words_file[0] ? model_path(a, sizeof a, dir, c->wiki_words_file) : NULL, err);
    if (s != DALLE_OK || !c->clip_merges_file[0])
        return s;
    return dalle_clip_tokenizer_load(
        &m->clip_bpe, model_path(a, sizeof a, dir, c->clip_merges_file), CLIP_MERGES, err);
}

/* The optional image stages: VQGAN (files.vqgan + "vqgan") and CLIP (files.clip + "clip",
 * which also needs the CLIP tokenizer). */
static dalle_status load_images(dalle_model *m, const char *dir, dalle_error *err) {
    const dalle_model_config *c = &m->cfg;
    char path[PATH_MAX], label[PATH_MAX + 16];
    dalle_status s = DALLE_OK;
    snprintf(label, sizeof label, "%s/config.json", dir);
    if (c->vqgan_file[0]) {
        if (!c->vqgan_json)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: files.vqgan needs a \"vqgan\" section", label);
        s = dalle_vqgan_load(&m->vqgan, m->be, c->vqgan_json, label,
                             model_path(path, sizeof path, dir, c->vqgan_file), err);
        if (s != DALLE_OK)
            return s;
        m->has_vqgan = 1;
        const dalle_vqgan_hparams *v = &m->vqgan.hp;
        if (v->latent * v->latent != c->bart.image_length ||
            v->codebook_size < c->bart.image_vocab_size)
            return dalle_error_set(
                err, DALLE_ERR_FORMAT,
                "%s: the VQGAN takes %d×%d codes below %d, but the decoder makes "
                "%d codes below %d",
                label, v->latent, v->latent, v->codebook_size, c->bart.image_length,
                c->bart.image_vocab_size);
    }
    if (c->clip_file[0]) {
        dalle_clip_hparams hp;
        if (!c->clip_json)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: files.clip needs a \"clip\" section",
                                   label);
        if (!m->clip_bpe)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: files.clip needs files.clip_merges",
                                   label);
        s = dalle_clip_hparams_parse(&hp, c->clip_json, label, err);
        if (s == DALLE_OK && hp.context_length != DALLE_CLIP_TEXT_LENGTH)
            s = dalle_error_set(err, DALLE_ERR_FORMAT, "%s: clip.text.context_length must be %d",
                                label, DALLE_CLIP_TEXT_LENGTH);
        if (s == DALLE_OK && hp.vocab_size != dalle_clip_tokenizer_vocab_size(m->clip_bpe))
            s = dalle_error_set(err, DALLE_ERR_FORMAT,
                                "%s: clip.text.vocab_size %d differs from the %d ids of %s", label,
                                hp.vocab_size, dalle_clip_tokenizer_vocab_size(m->clip_bpe),
                                c->clip_merges_file);
        if (s == DALLE_OK)
            s = dalle_clip_load(&m->clip, m->be, &hp,
                                model_path(path, sizeof path, dir, c->clip_file), err);
        if (s != DALLE_OK)
            return s;
        m->has_clip = 1;
    }
    return DALLE_OK;
}

dalle_status dalle_model_load(dalle_model **out, const char *dir, const dalle_model_params *p,
                              dalle_error *err) {
    *out = NULL;
    dalle_model *m = calloc(1, sizeof *m);
    if (!m)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    if (p)
        m->params = *p;
    else
        dalle_model_params_default(&m->params);

    char enc[PATH_MAX], dec[PATH_MAX];
    dalle_status s = dalle_model_config_load(&m->cfg, dir, err);
    if (s == DALLE_OK)
        s = load_text(m, dir, err);
    if (s == DALLE_OK)
        s = backend_new(&m->params, &m->be, err);
    if (s == DALLE_OK)
        s = dalle_bart_load(&m->bart, m->be, &m->cfg.bart,
                            model_path(enc, sizeof enc, dir, m->cfg.encoder_file),
                            model_path(dec, sizeof dec, dir, m->cfg.decoder_file), err);
    if (s == DALLE_OK)
        s = encode_uncond(m, err);
    if (s == DALLE_OK)
        s = load_images(m, dir, err);
    if (s != DALLE_OK) {
        dalle_model_free(m);
        return s;
    }
    *out = m;
    return DALLE_OK;
}

void dalle_model_free(dalle_model *m) {
    if (!m)
        return;
    dalle_bart_free(&m->bart);
    if (m->has_vqgan)
        dalle_vqgan_free(&m->vqgan);
    if (m->has_clip)
        dalle_clip_free(&m->clip);
    if (m->be)
        m->be->ops->destroy(m->be);
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
        .kernels = m->be->ops->variant ? m->be->ops->variant(m->be) : m->be->ops->name,
        .weight_bytes =
            (int64_t)(m->bart.weight_bytes + (m->has_vqgan ? m->vqgan.weight_bytes : 0) +
                      (m->has_clip ? m->clip.weight_bytes : 0)),
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
        .has_vqgan = m->has_vqgan,
        .has_clip = m->has_clip,
        .image_size = m->has_vqgan ? m->vqgan.hp.resolution : 0,
        .description = m->cfg.description,
        .n_examples = m->cfg.n_examples,
    };
    for (int k = 0; k < m->cfg.n_examples; k++)
        info->examples[k] = m->cfg.examples[k];
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
    if (s != DALLE_OK)
        dalle_text_free(out);
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

dalle_status dalle_gen_params_check(const dalle_model *m, const dalle_gen_params *p, int max_images,
                                    dalle_error *err) {
    const dalle_status bad = DALLE_ERR_INVALID_ARG;
    if (p->n_images < 1 || p->n_images > max_images)
        return dalle_error_set(err, bad, "n must be in [1, %d], got %d", max_images, p->n_images);
    if (p->first_image < 0 || p->first_image > INT32_MAX - p->n_images)
        return dalle_error_set(err, bad, "first_image must be in [0, %d], got %d",
                               INT32_MAX - p->n_images, p->first_image);
    if (!isfinite(p->cond_scale) || p->cond_scale < DALLE_COND_SCALE_MIN ||
        p->cond_scale > DALLE_COND_SCALE_MAX)
        return dalle_error_set(err, bad, "cond_scale must be in [%d, %d], got %g",
                               DALLE_COND_SCALE_MIN, DALLE_COND_SCALE_MAX, p->cond_scale);
    if (!isfinite(p->temperature) || p->temperature <= 0 || p->temperature > DALLE_TEMPERATURE_MAX)
        return dalle_error_set(err, bad, "temperature must be in (0, %d], got %g",
                               DALLE_TEMPERATURE_MAX, p->temperature);
    if (!isfinite(p->top_p) || p->top_p <= 0 || p->top_p > DALLE_TOP_P_MAX)
        return dalle_error_set(err, bad, "top_p must be in (0, %d], got %g", DALLE_TOP_P_MAX,
                               p->top_p);
    if (p->top_k < DALLE_TOP_K_MIN || p->top_k > m->cfg.bart.image_vocab_size)
        return dalle_error_set(err, bad, "top_k must be in [%d, %d], got %d", DALLE_TOP_K_MIN,
                               m->cfg.bart.image_vocab_size, p->top_k);
    return DALLE_OK;
}

static void *host_alloc(size_t bytes, int *ok) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        *ok = 0;
    return p;
}

/* The image-side buffers of a state: VQGAN work, CLIP work, preprocessing, JPEG. Each stage
 * is set up when the model has it; CLIP alone (a ranking-only model) needs no VQGAN, and the
 * prepared resize plan from VQGAN's resolution exists only when both do. */
static dalle_status state_images(dalle_state *s, dalle_error *err) {
    const dalle_model *m = s->m;
    const size_t B = (size_t)s->max_images;
    dalle_status st = dalle_jpeg_encoder_new(&s->jpeg, err);
    int ok = 1;
    if (st == DALLE_OK && m->has_vqgan) {
        const size_t R = (size_t)m->vqgan.hp.resolution;
        s->rgb = host_alloc(B * R * R * 3, &ok);
        st = dalle_vqgan_work_new(&s->vqgan, &m->vqgan, s->be, s->max_images, err);
    }
    if (st != DALLE_OK || !m->has_clip)
        return ok ? st : dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    const size_t S = (size_t)m->clip.hp.image_size, E = (size_t)m->clip.hp.embed_dim;
    s->clip_pixels = host_alloc(B * S * S * 3 * sizeof(float), &ok);
    s->clip_img = host_alloc(B * E * sizeof(float), &ok);
    s->clip_txt = host_alloc(E * sizeof(float), &ok);
    if (!ok)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    if (m->has_vqgan) {
        const int R = m->vqgan.hp.resolution;
        st = dalle_image_prep_init(&s->prep, R, R, (int)S, err);
        if (st == DALLE_OK)
            st = dalle_image_prep_plan(&s->prep, s->be, &s->prep_plan, &s->prep_plan_mem, err);
        if (st != DALLE_OK)
            return st;
    }
    return dalle_clip_work_new(&s->clip, &m->clip, s->be, s->max_images, err);
}

dalle_status dalle_state_new(dalle_state **out, const dalle_model *m, const dalle_state_params *p,
                             dalle_error *err) {
    *out = NULL;
    const int max_images = p && p->max_images > 0 ? p->max_images : 1;
    const int max_prompts = p && p->max_prompts > 0 ? p->max_prompts : 1;
    if (max_images > DALLE_MAX_STATE_IMAGES || max_prompts > max_images)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "state sizes: max_images %d (≤ %d), max_prompts %d (≤ max_images)",
                               max_images, DALLE_MAX_STATE_IMAGES, max_prompts);
    const int T = m->cfg.bart.text_length, C = m->cfg.bart.d_model, R = 2 * max_images;
    const int P = m->cfg.bart.image_length;
    dalle_state *s = calloc(1, sizeof *s);
    if (!s)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    s->m = m;
    s->max_images = max_images;
    s->max_prompts = max_prompts;
    dalle_status st = backend_new(&m->params, &s->be, err);
    if (st == DALLE_OK)
        st = dalle_bart_work_new(&s->work, &m->bart, s->be, max_prompts, R, 1 + max_prompts, err);
    if (st == DALLE_OK) {
        int ok = 1;
        s->enc_out = s->be->ops->alloc(s->be, (size_t)max_prompts * T * C * sizeof(float));
        ok = s->enc_out != NULL;
        s->ids = host_alloc((size_t)max_prompts * T * sizeof(int32_t), &ok);
        s->mask = host_alloc((size_t)max_prompts * T, &ok);
        s->token = host_alloc((size_t)R * sizeof(int32_t), &ok);
        s->pos = host_alloc((size_t)R * sizeof(int32_t), &ok);
        s->slot = host_alloc((size_t)R * sizeof(int32_t), &ok);
        s->block = host_alloc((size_t)R * sizeof(int32_t), &ok);
        s->sp = host_alloc((size_t)max_images * sizeof *s->sp, &ok);
        s->step = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->sampled = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->jobs = calloc((size_t)max_images, sizeof *s->jobs);
        s->image_job = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->image_index = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->batch_image = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->batch_jobs = host_alloc((size_t)max_prompts * sizeof(int32_t), &ok);
        s->codes_host = host_alloc((size_t)2 * max_images * P * sizeof(int32_t), &ok);
        s->preview_codes = host_alloc((size_t)max_images * P * sizeof(int32_t), &ok);
        s->scores = host_alloc((size_t)max_images * sizeof(float), &ok);
        s->order = host_alloc((size_t)max_images * sizeof(int32_t), &ok);
        s->image_ptr = host_alloc((size_t)max_images * sizeof *s->image_ptr, &ok);
        s->image_side = host_alloc((size_t)max_images * sizeof(int), &ok);
        s->block_used = calloc((size_t)max_prompts + 1, 1);
        if (!s->jobs || !s->block_used)
            ok = 0;
        for (int k = 0; ok && k < max_images; k++)
            s->image_job[k] = -1;
        if (!ok)
            st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    if (st == DALLE_OK)
        st = state_images(s, err);
    if (st == DALLE_OK) {
        s->be->ops->to_device(s->be, s->enc_out, m->uncond_enc, (size_t)T * C * sizeof(float));
        dalle_bart_cross_kv(&m->bart, &s->work, s->enc_out, m->uncond_mask, DALLE_UNCOND_BLOCK);
        s->be->ops->sync(s->be);
        if (s->be->failed != DALLE_OK)
            st = dalle_error_set(err, s->be->failed, "out of memory (backend working memory)");
    }
    if (st != DALLE_OK) {
        dalle_state_free(s);
        return st;
    }
    *out = s;
    return DALLE_OK;
}

void dalle_state_free(dalle_state *s) {
    if (!s)
        return;
    dalle_bart_work_free(&s->work);
    dalle_vqgan_work_free(&s->vqgan);
    dalle_clip_work_free(&s->clip);
    dalle_image_prep_free(&s->prep);
    dalle_jpeg_encoder_free(s->jpeg);
    if (s->be) {
        if (s->enc_out)
            s->be->ops->free(s->be, s->enc_out);
        if (s->prep_plan_mem)
            s->be->ops->free(s->be, s->prep_plan_mem);
        s->be->ops->destroy(s->be);
    }
    void *host[] = {s->ids,         s->mask,        s->token,      s->pos,        s->slot,
                    s->block,       s->sp,          s->step,       s->sampled,    s->clip_pixels,
                    s->clip_img,    s->clip_txt,    s->rgb,        s->jobs,       s->image_job,
                    s->image_index, s->batch_image, s->batch_jobs, s->codes_host, s->preview_codes,
                    s->scores,      s->order,       s->image_ptr,  s->image_side, s->block_used};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    free(s);
}
