/* generate.c — generation on a dalle_state (dalle.h): jobs join and leave a running decode
 * batch at any step (iteration-level batching) → VQGAN pixels → CLIP ranking → JPEG files.
 *
 * Image slot k of a state owns KV-cache slots 2k (conditional) and 2k+1 (unconditional);
 * a job's prompt owns one cross-attention block (block 0 is the shared unconditional one).
 * Each step packs the running images into decoder rows 2n, 2n+1, every row at its own
 * position. Image i of a job samples with RNG(seed, i, step) whatever its place in the
 * batch, so batching never changes an image. Ranking preprocesses VQGAN-sized images on the
 * backend (ops.h clip_prep, by the plan the state uploaded once), in dalle_generate straight
 * from the decoded bytes the VQGAN left in backend memory; other sizes on the host. Nothing
 * here allocates on the device; host allocations are the result's own JPEG and code copies.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/pipeline_impl.h"

/* The backend's out-of-memory report (ops.h dalle_backend.failed), cleared. */
static dalle_status backend_failed(dalle_state *s, dalle_error *err) {
    if (s->be->failed == DALLE_OK)
        return DALLE_OK;
    s->be->failed = DALLE_OK;
    return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory (backend working memory)");
}

/* ---- iteration-level batching ------------------------------------------------------ */

static dalle_status check_text(const dalle_model *m, const dalle_text *t, dalle_error *err) {
    const dalle_bart_hparams *hp = &m->cfg.bart;
    if (t->text_length != hp->text_length)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "text has %d positions, the model wants %d", t->text_length,
                               hp->text_length);
    for (int i = 0; i < hp->text_length; i++)
        if (t->ids[i] < 0 || t->ids[i] >= hp->text_vocab_size)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text id %d out of range [0, %d)",
                                   t->ids[i], hp->text_vocab_size);
    if (!t->mask[0])
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text mask hides the first token");
    return DALLE_OK;
}

int dalle_state_free_images(const dalle_state *s) {
    int n = 0;
    for (int k = 0; k < s->max_images; k++)
        n += s->image_job[k] < 0;
    return n;
}

int dalle_state_running_images(const dalle_state *s) {
    return s->max_images - dalle_state_free_images(s);
}

int dalle_state_free_prompts(const dalle_state *s) {
    int n = 0;
    for (int b = 1; b <= s->max_prompts; b++)
        n += !s->block_used[b];
    return n;
}

dalle_status dalle_job_start(dalle_state *s, const dalle_text *text, const dalle_gen_params *p,
                             int *job, dalle_error *err) {
    const dalle_model *m = s->m;
    const int T = m->cfg.bart.text_length, C = m->cfg.bart.d_model;
    *job = -1;
    if (p->n_images > s->max_images)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED,
                               "%d images in one job; this state takes %d", p->n_images,
                               s->max_images);
    dalle_status st = dalle_gen_params_check(m, p, s->max_images, err);
    if (st == DALLE_OK)
        st = check_text(m, text, err);
    if (st != DALLE_OK)
        return st;
    if (dalle_state_free_images(s) < p->n_images || dalle_state_free_prompts(s) < 1)
        return DALLE_OK;
    int j = 0, b = 1;
    while (s->jobs[j].state != DALLE_JOB_FREE)
        j++; // a free record exists: n_images ≥ 1 each
    while (s->block_used[b])
        b++;
    float *enc = s->enc_out + (size_t)(b - 1) * T * C;
    dalle_bart_encode(&m->bart, &s->work, text->ids, text->mask, 1, enc); // [1, T, C]
    dalle_bart_cross_kv(&m->bart, &s->work, enc, text->mask, b);
    if ((st = backend_failed(s, err)) != DALLE_OK)
        return st;
    s->block_used[b] = 1;
    s->jobs[j] = (dalle_job_rec){DALLE_JOB_RUNNING, b, 0, *p};
    for (int k = 0, i = 0; i < p->n_images; k++)
        if (s->image_job[k] < 0) {
            s->image_job[k] = j;
            s->image_index[k] = i++;
        }
    *job = j;
    return DALLE_OK;
}

/* A job stops decoding: done (its images stay held for dalle_job_finish) or cancelled (its
 * images are free now). Its prompt block is free either way. */
static void job_leave(dalle_state *s, int j, dalle_job_state state) {
    if (state == DALLE_JOB_CANCELLED)
        for (int k = 0; k < s->max_images; k++)
            if (s->image_job[k] == j)
                s->image_job[k] = -1;
    s->block_used[s->jobs[j].block] = 0;
    s->jobs[j].state = state;
}

void dalle_job_release(dalle_state *s, int job) {
    if (job < 0 || job >= s->max_images || s->jobs[job].state == DALLE_JOB_FREE)
        return;
    if (s->jobs[job].state == DALLE_JOB_RUNNING)
        job_leave(s, job, DALLE_JOB_CANCELLED);
    for (int k = 0; k < s->max_images; k++)
        if (s->image_job[k] == job)
            s->image_job[k] = -1;
    memset(&s->jobs[job], 0, sizeof s->jobs[job]);
}

int dalle_job_progress(const dalle_state *s, int job) {
    if (job < 0 || job >= s->max_images)
        return -1;
    const dalle_job_rec *r = &s->jobs[job];
    return r->state == DALLE_JOB_RUNNING || r->state == DALLE_JOB_DONE ? r->step : -1;
}

int dalle_job_codes(dalle_state *s, int job, int32_t *codes) {
    const int progress = dalle_job_progress(s, job);
    if (progress <= 0)
        return progress;
    const int P = s->m->cfg.bart.image_length;
    int lo = s->max_images, hi = -1; // the job's image slots: one copy of rows 2·lo..2·hi
    for (int k = 0; k < s->max_images; k++)
        if (s->image_job[k] == job) {
            lo = k < lo ? k : lo;
            hi = k;
        }
    const size_t first = (size_t)2 * lo * P, count = (size_t)(2 * (hi - lo) + 1) * P;
    s->be->ops->to_host(s->be, s->codes_host, s->work.codes_dev + first, count * sizeof *codes);
    for (int k = lo; k <= hi; k++)
        if (s->image_job[k] == job)
            memcpy(codes + (size_t)s->image_index[k] * P, s->codes_host + (size_t)2 * k * P - first,
                   (size_t)progress * sizeof *codes);
    return progress;
}

/* Token rows: after a step, sample_dev has put the token of packed image n into the next
 * step's token rows 2n, 2n+1 of work.step_dev and its code into work.codes_dev at row 2k
 * (k: the image slot, whose conditional KV slot that is). A step whose packing keeps image
 * k at place n finds its token there; an image that moved reads its last code from
 * codes_dev (a device copy), and a new image's start token is uploaded. Nothing returns to
 * the host. */
static void token_rows(dalle_state *s, int n, int k, int step) {
    dalle_backend *be = s->be;
    const int P = s->m->cfg.bart.image_length;
    int32_t *rows = s->work.step_dev + 2 * n;
    if (step > 0 && n < s->dev_tokens && s->batch_image[n] == k)
        return; // in place since the last step
    if (step == 0) {
        s->token[2 * n] = s->token[2 * n + 1] = s->m->cfg.bart.start_token;
        be->ops->to_device(be, rows, s->token + 2 * n, 2 * sizeof *rows);
    } else {
        const int32_t *last = s->work.codes_dev + (size_t)2 * k * P + step - 1;
        be->ops->copy(be, rows, last, sizeof *rows);
        be->ops->copy(be, rows + 1, last, sizeof *rows);
    }
}

dalle_status dalle_state_step(dalle_state *s) {
    const dalle_model *m = s->m;
    const int P = m->cfg.bart.image_length, V = m->cfg.bart.image_vocab_size;
    for (int j = 0; j < s->max_images; j++) {
        dalle_job_rec *r = &s->jobs[j];
        if (r->state == DALLE_JOB_RUNNING && r->p.should_stop && r->p.should_stop(r->p.user))
            job_leave(s, j, DALLE_JOB_CANCELLED);
    }
    int n = 0; // compact rows: image n → rows 2n (cond), 2n+1 (uncond)
    for (int k = 0; k < s->max_images; k++) {
        if (s->image_job[k] < 0 || s->jobs[s->image_job[k]].state != DALLE_JOB_RUNNING)
            continue;
        const dalle_job_rec *r = &s->jobs[s->image_job[k]];
        const dalle_gen_params *p = &r->p;
        token_rows(s, n, k, r->step);
        s->batch_image[n] = k;
        s->sp[n] = (dalle_sample_params){
            p->cond_scale, p->temperature, p->top_p,
            p->top_k,      p->seed,        (uint32_t)(p->first_image + s->image_index[k])};
        s->step[n] = r->step;
        s->sampled[n] = 2 * k * P + r->step; // where sample_dev puts the code
        for (int c = 0; c < 2; c++) {
            s->pos[2 * n + c] = r->step;
            s->slot[2 * n + c] = 2 * k + c;
            s->block[2 * n + c] = c == 0 ? r->block : DALLE_UNCOND_BLOCK;
        }
        n++;
    }
    s->dev_tokens = n;
    if (n == 0)
        return DALLE_OK;
    dalle_bart_decode_step(&m->bart, &s->work, NULL, s->pos, s->slot, s->block, 2 * n, V);
    s->be->ops->sample_dev(s->be, s->work.step_dev, s->work.codes_dev, s->sampled, s->work.logits,
                           n, V, V, s->sp, s->step);
    const dalle_status st = backend_failed(s, NULL);
    for (int j = 0; j < s->max_images; j++) {
        dalle_job_rec *r = &s->jobs[j];
        if (r->state == DALLE_JOB_RUNNING && st != DALLE_OK)
            job_leave(s, j, DALLE_JOB_CANCELLED);
        else if (r->state == DALLE_JOB_RUNNING && ++r->step == P)
            job_leave(s, j, DALLE_JOB_DONE);
    }
    if (st != DALLE_OK)
        s->dev_tokens = 0; // nothing was sampled
    return st;
}

void dalle_state_device_counts(const dalle_state *s, long *to_host_copies, long *syncs) {
    *to_host_copies = s->be->to_host_copies;
    *syncs = s->be->syncs;
}

dalle_status dalle_generate_codes_batch(dalle_state *s, int n_req, const dalle_text *texts,
                                        const dalle_gen_params *params, int32_t *const *codes,
                                        dalle_timings *timings, dalle_error *err) {
    if (n_req < 1 || n_req > dalle_state_free_prompts(s))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "%d prompts in one batch; this state has room for 1..%d", n_req,
                               dalle_state_free_prompts(s));
    int images = 0;
    for (int r = 0; r < n_req; r++) {
        dalle_status st = dalle_gen_params_check(s->m, &params[r], s->max_images, err);
        if (st == DALLE_OK)
            st = check_text(s->m, &texts[r], err);
        if (st != DALLE_OK)
            return st;
        images += params[r].n_images;
    }
    if (images > dalle_state_free_images(s))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "%d images in one batch; this state has room for %d", images,
                               dalle_state_free_images(s));
    double t0 = dalle_now_ms();
    int32_t *jobs = s->batch_jobs; // [max_prompts]
    for (int r = 0; r < n_req; r++) {
        dalle_status st = dalle_job_start(s, &texts[r], &params[r], &jobs[r], err);
        DALLE_ASSERT(st == DALLE_OK && jobs[r] >= 0); // checked above
    }
    s->be->ops->sync(s->be);
    double t1 = dalle_now_ms();
    const int P = s->m->cfg.bart.image_length;
    int cancelled = 0;
    dalle_status st = DALLE_OK;
    for (int t = 0; t < P && !cancelled && st == DALLE_OK; t++) {
        st = dalle_state_step(s);
        for (int r = 0; r < n_req; r++)
            cancelled |= dalle_job_progress(s, jobs[r]) < 0;
    }
    for (int r = 0; r < n_req; r++) {
        if (!cancelled)
            dalle_job_codes(s, jobs[r], codes[r]);
        dalle_job_release(s, jobs[r]);
    }
    double t2 = dalle_now_ms();
    if (st != DALLE_OK)
        return dalle_error_set(err, st, "out of memory (backend working memory)");
    if (cancelled)
        return dalle_error_set(err, DALLE_ERR_CANCELLED, "generation cancelled");
    if (timings) {
        memset(timings, 0, sizeof *timings);
        timings->encode_ms = t1 - t0;
        timings->decode_ms = t2 - t1;
        timings->total_ms = t2 - t0;
    }
    return DALLE_OK;
}

dalle_status dalle_generate_codes_text(dalle_state *s, const dalle_text *text,
                                       const dalle_gen_params *p, int32_t *codes,
                                       dalle_timings *timings, dalle_error *err) {
    int32_t *const out[1] = {codes};
    return dalle_generate_codes_batch(s, 1, text, p, out, timings, err);
}

dalle_status dalle_generate_codes(dalle_state *s, const char *prompt, size_t n,
                                  const dalle_gen_params *p, int32_t *codes, dalle_timings *timings,
                                  dalle_error *err) {
    dalle_status st = dalle_gen_params_check(s->m, p, s->max_images, err);
    if (st != DALLE_OK)
        return st;
    double t0 = dalle_now_ms();
    dalle_text text;
    st = dalle_text_encode(s->m, prompt, n, &text, err);
    if (st != DALLE_OK)
        return st;
    double text_ms = dalle_now_ms() - t0;
    st = dalle_generate_codes_text(s, &text, p, codes, timings, err);
    dalle_text_free(&text);
    if (st == DALLE_OK && timings) {
        timings->text_ms = text_ms;
        timings->total_ms += text_ms;
    }
    return st;
}

/* ---- images ---------------------------------------------------------------------- */

dalle_status dalle_decode_codes(dalle_state *s, const int32_t *codes, int n, uint8_t *rgb,
                                dalle_error *err) {
    const dalle_model *m = s->m;
    if (!m->has_vqgan)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no VQGAN (files.vqgan)",
                               m->cfg.name);
    const dalle_vqgan_hparams *hp = &m->vqgan.hp;
    const size_t L = (size_t)hp->latent * hp->latent;
    const size_t px = (size_t)hp->resolution * hp->resolution * hp->out_ch;
    for (int done = 0; done < n;) {
        const int B = n - done < s->max_images ? n - done : s->max_images;
        dalle_status st = dalle_vqgan_decode(&m->vqgan, &s->vqgan, codes + done * L, B, err);
        if (st != DALLE_OK)
            return st;
        const int bad = dalle_vqgan_read_u8(&m->vqgan, &s->vqgan, B, rgb + done * px);
        if ((st = backend_failed(s, err)) != DALLE_OK)
            return st;
        if (bad >= 0)
            return dalle_error_set(err, DALLE_ERR_BACKEND,
                                   "the VQGAN produced a non-finite value (image %d)", done + bad);
        done += B;
    }
    return DALLE_OK;
}

/* CLIP input b of the batch in backend memory (s->clip.pixels) from image i. An R×R image
 * (the VQGAN's size) goes through the state's clip_prep plan on the backend, read from
 * s->vqgan.rgb image i when `resident` (the last decode's bytes, dalle_vqgan_read_u8) or
 * uploaded there as image b; any other size is preprocessed on the host and uploaded. Both
 * give image_prep.c's values bit for bit. */
static dalle_status clip_input(dalle_state *s, const uint8_t *rgb, int width, int height, int i,
                               int b, int resident, dalle_error *err) {
    const dalle_model *m = s->m;
    dalle_backend *be = s->be;
    const size_t S = (size_t)m->clip.hp.image_size, in = S * S * 3;
    float *dst = s->clip.pixels + b * in; // [S, S, 3]
    const int planned = m->has_vqgan && width == s->prep.in_w && height == s->prep.in_h;
    if (planned && s->prep_plan_mem) {
        const size_t px = (size_t)width * height * 3;
        const uint8_t *src = s->vqgan.rgb + (resident ? i : b) * px; // [R, R, 3]
        if (!resident)
            be->ops->to_device(be, s->vqgan.rgb + b * px, rgb, px);
        be->ops->clip_prep(be, dst, src, &s->prep_plan, 1);
        return DALLE_OK;
    }
    float *host = s->clip_pixels + b * in;
    if (planned) { // the prepared host plan
        dalle_image_prep_run(&s->prep, rgb, 1, host);
    } else {
        dalle_image_prep prep;
        dalle_status st = dalle_image_prep_init(&prep, width, height, (int)S, err);
        if (st != DALLE_OK)
            return st;
        dalle_image_prep_run(&prep, rgb, 1, host);
        dalle_image_prep_free(&prep);
    }
    be->ops->to_device(be, dst, host, in * sizeof(float));
    return DALLE_OK;
}

/* dalle_rank_images; resident: image i is also s->vqgan.rgb image i (dalle_generate). */
static dalle_status rank(dalle_state *s, const int32_t *clip_ids, const uint8_t *const *rgb,
                         const int *width, const int *height, int n, int resident, float *scores,
                         int32_t *order, dalle_error *err) {
    const dalle_model *m = s->m;
    if (!m->has_clip)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no CLIP (files.clip)",
                               m->cfg.name);
    if (n < 1)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "no images to rank");
    const size_t E = (size_t)m->clip.hp.embed_dim;
    dalle_status st = dalle_clip_text_embed(&m->clip, &s->clip, clip_ids, s->clip_txt, err);
    if (st != DALLE_OK)
        return st;
    float *img = malloc((size_t)n * E * sizeof *img);
    if (!img)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    for (int done = 0; done < n && st == DALLE_OK;) {
        int B = 0;
        for (; st == DALLE_OK && B < s->max_images && done + B < n; B++) {
            const int i = done + B;
            st = clip_input(s, rgb[i], width[i], height[i], i, B, resident, err);
        }
        if (st != DALLE_OK)
            break;
        dalle_clip_image_embed(&m->clip, &s->clip, s->clip.pixels, B, img + (size_t)done * E);
        done += B;
    }
    if (st == DALLE_OK)
        st = backend_failed(s, err);
    if (st == DALLE_OK)
        dalle_clip_scores(&m->clip, img, n, s->clip_txt, scores, order);
    free(img);
    return st;
}

dalle_status dalle_rank_images(dalle_state *s, const int32_t *clip_ids, const uint8_t *const *rgb,
                               const int *width, const int *height, int n, float *scores,
                               int32_t *order, dalle_error *err) {
    return rank(s, clip_ids, rgb, width, height, n, 0, scores, order, err);
}

/* ---- finishing a job ------------------------------------------------------------ */

dalle_status dalle_job_preview(dalle_state *s, int job, uint8_t *rgb, dalle_error *err) {
    const dalle_model *m = s->m;
    if (!m->has_vqgan)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no VQGAN (files.vqgan)",
                               m->cfg.name);
    const int P = m->cfg.bart.image_length, W = m->vqgan.hp.latent;
    const int step = dalle_job_codes(s, job, s->preview_codes);
    if (step < 1)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "job %d has no codes yet", job);
    const int n = s->jobs[job].p.n_images;
    for (int i = 0; i < n; i++) {
        int32_t *c = s->preview_codes + (size_t)i * P; // [L, L] raster
        for (int k = step; k < P; k++)
            c[k] = k >= W ? c[k - W] : c[step - 1];
    }
    return dalle_decode_codes(s, s->preview_codes, n, rgb, err);
}

dalle_status dalle_job_finish(dalle_state *s, int job, const int32_t *clip_ids,
                              const dalle_job_output *out, dalle_timings *timings,
                              dalle_error *err) {
    const dalle_model *m = s->m;
    const int P = m->cfg.bart.image_length;
    dalle_status st = DALLE_OK;
    if (dalle_job_progress(s, job) != P)
        st = dalle_error_set(err, DALLE_ERR_INVALID_ARG, "job %d is not done", job);
    else if (!m->has_vqgan)
        st = dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no VQGAN (files.vqgan)",
                             m->cfg.name);
    else if (clip_ids && !m->has_clip)
        st = dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no CLIP (files.clip)",
                             m->cfg.name);
    if (st != DALLE_OK) {
        dalle_job_release(s, job);
        return st;
    }
    const int n = s->jobs[job].p.n_images, R = m->vqgan.hp.resolution;
    const size_t px = (size_t)R * R * 3;
    int32_t *codes = out->codes ? out->codes : s->preview_codes;
    dalle_job_codes(s, job, codes);
    dalle_job_release(s, job);
    const double t0 = dalle_now_ms();
    st = dalle_decode_codes(s, codes, n, s->rgb, err); // the bytes stay in s->vqgan.rgb too
    const double t1 = dalle_now_ms();
    for (int i = 0; i < n; i++)
        s->order[i] = i, s->scores[i] = 0;
    if (st == DALLE_OK && clip_ids) {
        const uint8_t **rgb = s->image_ptr;
        for (int i = 0; i < n; i++)
            rgb[i] = s->rgb + i * px, s->image_side[i] = R;
        st = rank(s, clip_ids, rgb, s->image_side, s->image_side, n, 1, s->scores, s->order, err);
    }
    if (st != DALLE_OK)
        return st;
    for (int k = 0; k < n; k++) {
        const int i = s->order[k];
        memcpy(out->rgb + k * px, s->rgb + i * px, px);
        out->order[k] = i;
        out->scores[k] = s->scores[i];
    }
    if (timings) {
        timings->vqgan_ms = t1 - t0;
        timings->clip_ms = dalle_now_ms() - t1;
    }
    return DALLE_OK;
}

/* ---- the whole pipeline ------------------------------------------------------------- */

void dalle_output_params_default(const dalle_model *m, dalle_output_params *o) {
    const int R = m->vqgan.hp.resolution;
    *o = (dalle_output_params){.jpeg_quality = 90,
                               .jpeg_subsampling = dalle_jpeg_default_subsampling(R, R),
                               .rank = m->has_clip};
}

static dalle_status output_check(const dalle_model *m, const dalle_output_params *o,
                                 dalle_subsamp *ss, dalle_error *err) {
    if (o->jpeg_quality < DALLE_QUALITY_MIN || o->jpeg_quality > DALLE_QUALITY_MAX)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "quality must be in [%d, %d], got %d",
                               DALLE_QUALITY_MIN, DALLE_QUALITY_MAX, o->jpeg_quality);
    const dalle_status st = dalle_jpeg_subsamp_from(o->jpeg_subsampling, ss, err);
    if (st != DALLE_OK)
        return st;
    if (o->rank && !m->has_clip)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "ranking needs CLIP, and model '%s' has none", m->cfg.name);
    if (!m->has_vqgan)
        return dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "model '%s' has no VQGAN (files.vqgan)",
                               m->cfg.name);
    return DALLE_OK;
}

void dalle_result_free(dalle_result *r) {
    if (r->images)
        for (int i = 0; i < r->n_images; i++)
            free(r->images[i].jpeg);
    free(r->images);
    free(r->codes);
    memset(r, 0, sizeof *r);
}

dalle_status dalle_generate(dalle_state *s, const char *prompt, size_t n, const dalle_gen_params *p,
                            const dalle_output_params *o, dalle_result *out, dalle_error *err) {
    const dalle_model *m = s->m;
    memset(out, 0, sizeof *out);
    dalle_output_params def;
    if (!o)
        dalle_output_params_default(m, &def), o = &def;
    dalle_subsamp ss = DALLE_SUBSAMP_420;
    dalle_status st = output_check(m, o, &ss, err);
    if (st == DALLE_OK)
        st = dalle_gen_params_check(m, p, s->max_images, err);
    if (st != DALLE_OK)
        return st;

    const int N = p->n_images, R = m->vqgan.hp.resolution, P = m->cfg.bart.image_length;
    double t0 = dalle_now_ms();
    dalle_text text;
    st = dalle_text_encode(m, prompt, n, &text, err);
    if (st != DALLE_OK)
        return st;
    out->n_images = N;
    out->width = out->height = R;
    out->ranked = o->rank;
    out->codes = malloc((size_t)N * P * sizeof *out->codes);
    out->images = calloc((size_t)N, sizeof *out->images);
    uint8_t *rgb = malloc((size_t)N * R * R * 3); // [N, R, R, 3] best first
    float *scores = malloc((size_t)N * sizeof *scores);
    int32_t *order = malloc((size_t)N * sizeof *order);
    if (!out->codes || !out->images || !rgb || !scores || !order)
        st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    double t1 = dalle_now_ms(), t2 = t1;
    int job = -1;
    if (st == DALLE_OK)
        st = dalle_job_start(s, &text, p, &job, err);
    if (st == DALLE_OK && job < 0)
        st =
            dalle_error_set(err, DALLE_ERR_INVALID_ARG, "%d images; this state has room for %d now",
                            N, dalle_state_free_images(s));
    if (st == DALLE_OK) {
        t2 = dalle_now_ms();
        while (st == DALLE_OK && dalle_job_progress(s, job) >= 0 && dalle_job_progress(s, job) < P)
            if ((st = dalle_state_step(s)) != DALLE_OK)
                dalle_error_set(err, st, "out of memory (backend working memory)");
        if (st == DALLE_OK && dalle_job_progress(s, job) < 0)
            st = dalle_error_set(err, DALLE_ERR_CANCELLED, "generation cancelled");
    }
    double t3 = dalle_now_ms();
    const dalle_job_output jo = {out->codes, rgb, order, scores};
    if (st == DALLE_OK)
        st = dalle_job_finish(s, job, o->rank ? text.clip_ids : NULL, &jo, &out->timings, err);
    double t4 = dalle_now_ms();
    if (st == DALLE_OK)
        st = dalle_jpeg_encode_images(s->jpeg, rgb, N, R, o->jpeg_quality, ss, order,
                                      o->rank ? scores : NULL, out->images, err);
    double t5 = dalle_now_ms();
    dalle_job_release(s, job);
    dalle_text_free(&text);
    free(rgb);
    free(scores);
    free(order);
    if (st != DALLE_OK) {
        dalle_result_free(out);
        return st;
    }
    dalle_timings *tm = &out->timings;
    tm->text_ms = t1 - t0;
    tm->encode_ms = t2 - t1;
    tm->decode_ms = t3 - t2;
    tm->jpeg_ms = t5 - t4;
    tm->total_ms = t5 - t0;
    return DALLE_OK;
}
