/* scheduler.c — per device: a bounded FIFO of generation jobs and the thread that runs them
 * with iteration-level batching; dispatch over the devices (scheduler.h).
 *
 * DESIGN
 * ------
 * HTTP threads validate a request, encode its text and call dalle_scheduler_dispatch, which
 * picks the least-loaded scheduler (images queued + images running) and appends the job to
 * its FIFO under `mu` if fewer than `capacity` jobs wait there (check and append are one
 * critical section, so bursts cannot overshoot the bound).
 *
 * One scheduler thread per device makes and owns a dalle_state (max_images = max_prompts =
 * --max-batch) on that device's model — made on that thread, so a GPU backend binds the
 * thread to its device — and loops: (1) sweep the queue, failing jobs whose
 * client hung up (499, never run) or that waited past --deadline (503 timeout, never run);
 * (2) admit queued jobs in FIFO order while the state has room for the head job's n images
 * and a prompt block (dalle_job_start runs its BART encoder; a job that does not fit yet
 * blocks the ones behind it, so large requests are not starved); (3) one decode step of
 * every running image (dalle_state_step); (4) progress callbacks and previews of the
 * running jobs; (5) the jobs whose images are done: the engine finishes each in one call
 * (dalle_job_finish: VQGAN, CLIP ranking, ranked pixels into the job's own buffer), then the
 * job goes to the encode pool, which JPEG-encodes, base64s and builds the JSON (and fails it
 * with 503 if a device fault happened meanwhile) and calls job->done. A new request
 * therefore waits at most one step for free room, never for a whole batch, and JPEG work
 * never delays a decode step. The scheduler decides only when: the stages are the engine's.
 *
 * Previews ("preview_every": k): every k steps the engine decodes the job's codes so far
 * (dalle_job_preview: the codes not generated yet are filled deterministically) on this
 * thread; the pool encodes them (quality ≤ DALLE_PREVIEW_MAX_QUALITY) and hands them to
 * job->preview. All tasks of one job use one pool lane, so its previews are delivered
 * before its final result. Previews only read the codes: the result is the same with or
 * without them.
 *
 * Cancellation: dalle_state_step polls each running job's should_stop, which polls the
 * client's socket for POLLRDHUP/POLLHUP (suspended MHD connections do not notice hang-ups)
 * and checks the drain deadline; the engine frees the job's rows for the next step and
 * dalle_job_progress reports -1, upon which the job is answered and released.
 *
 * Shutdown (dalle_scheduler_drain): `closing` makes submit refuse; the queued jobs are taken
 * out and failed with 503 by the caller; running jobs may finish until the drain deadline,
 * after which should_stop cancels them (503); then the thread exits and is joined (or, when
 * a device fault parked it, left alone).
 *
 * Device faults: the fault handler runs on the thread whose backend call failed and never
 * returns into the engine; dalle_scheduler_fault_here (that thread) fails every job the
 * scheduler holds — queued, `starting`, `running`, and `finishing` from `finish_next` on —
 * without touching the device. Every job is always in exactly one of these places, or
 * already handed to the pool.
 *
 * Threads: `mu` guards the queue, its counters and `closing`; the state and the job lists
 * are the scheduler thread's alone; the gauges read by /metrics are atomics.
 */
#include "server/scheduler.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/jpeg.h"
#include "server/metrics.h"

struct dalle_scheduler {
    dalle_server *srv;
    dalle_model *model;
    dalle_state *state; /* created by the scheduler thread itself */
    dalle_error init_err;
    int init_done;       /* guarded by mu: the thread made its state, or failed */
    dalle_job **running; /* [max_batch] decoding */
    int n_running;
    dalle_job **finishing; /* [max_batch] decoded or cancelled, being answered */
    int n_finishing, finish_next;
    dalle_job *starting; /* inside dalle_job_start */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dalle_job *head, *tail;              /* guarded by mu */
    int queued, queued_images, capacity; /* guarded by mu */
    int closing;                         /* guarded by mu */
    atomic_int in_flight, batch_images;
    _Atomic double stop_at_ms; /* drain deadline; 0 = none */
    atomic_int stop_fault;     /* the drain is for a device fault */
    atomic_int parked;         /* the thread hit a device fault and will never return */
};

static _Thread_local dalle_scheduler *this_scheduler;

double dalle_server_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int client_gone(int fd) {
    if (fd < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int should_stop(void *user) {
    dalle_job *job = user;
    const double at = atomic_load(&job->sched->stop_at_ms);
    if (at > 0 && dalle_server_now_ms() > at)
        return 1;
    return job->gone = atomic_load(&job->abandoned) || client_gone(job->fd);
}

/* Give the job an error body. */
static void fail(const dalle_server *srv, dalle_job *job, dalle_failure kind, int status,
                 const char *code, int retry_after, const char *msg) {
    dalle_http_error e;
    dalle_http_error_set(&e, status, code, NULL, "%s", msg);
    job->status = status;
    job->retry_after = retry_after;
    free(job->body);
    job->body = dalle_error_body(&e, &job->body_len);
    dalle_metrics_failure(srv->metrics, kind);
}

static void fail_device(const dalle_server *srv, dalle_job *job) {
    fail(srv, job, DALLE_FAIL_DEVICE, 503, "device_error", 0,
         "a compute device failed; the server is restarting");
}

/* A job stopped by the drain deadline or a device fault (never a client's doing). */
static void fail_stopped(dalle_scheduler *s, dalle_job *job, int ran) {
    if (atomic_load(&s->stop_fault))
        fail_device(s->srv, job);
    else
        fail(s->srv, job, DALLE_FAIL_SHUTDOWN, 503, "shutting_down", 1,
             ran ? "the server is shutting down; the generation was stopped"
                 : "the server is shutting down; the request was not run");
}

/* Pool: JPEG + base64 + JSON of a decoded job (status still 0). */
static void encode_result(dalle_job *job, dalle_jpeg_encoder *enc) {
    const dalle_server *srv = job->sched->srv;
    if (atomic_load(&srv->faulted)) { /* never a 200 after a device fault */
        fail_device(srv, job);
        return;
    }
    const int n = job->req.gen.n_images, R = srv->info.image_size;
    dalle_error err = {0};
    dalle_result r = {.n_images = n, .width = R, .height = R, .ranked = job->req.rank};
    r.timings = (dalle_timings){.text_ms = job->text_ms,
                                .decode_ms = job->decode_ms,
                                .vqgan_ms = job->vqgan_ms,
                                .clip_ms = job->clip_ms};
    const double t0 = dalle_server_now_ms();
    r.images = calloc((size_t)n, sizeof *r.images);
    dalle_subsamp ss;
    dalle_status st = !r.images ? dalle_error_set(&err, DALLE_ERR_NOMEM, "out of memory")
                                : dalle_jpeg_subsamp_from(job->req.subsampling, &ss, &err);
    if (st == DALLE_OK)
        st = dalle_jpeg_encode_images(enc, job->rgb, n, R, job->req.quality, ss, job->order,
                                      job->req.rank ? job->scores : NULL, r.images, &err);
    const double t1 = dalle_server_now_ms();
    r.timings.jpeg_ms = t1 - t0;
    r.timings.total_ms = job->text_ms + (t1 - job->t_start);
    const double queue_ms = job->t_admit - job->t_submit;
    if (st == DALLE_OK) {
        job->status = 200;
        job->images = n;
        job->body = dalle_response_body(srv, &job->req, job->id, &r, queue_ms, &job->body_len);
        dalle_metrics_generated(srv->metrics, n, n * srv->info.image_length, queue_ms / 1e3);
        const double stage_ms[DALLE_STAGE_COUNT] = {r.timings.text_ms, r.timings.decode_ms,
                                                    r.timings.vqgan_ms, r.timings.clip_ms,
                                                    r.timings.jpeg_ms};
        for (int k = 0; k < DALLE_STAGE_COUNT; k++)
            dalle_metrics_stage(srv->metrics, (dalle_stage)k, stage_ms[k] / 1e3);
        if (!job->body)
            fail(srv, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0, "out of memory");
    } else {
        fail(srv, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
    }
    dalle_result_free(&r);
}

/* Pool: the last task of a job. */
static void finish_task(dalle_pool_task *t, dalle_jpeg_encoder *enc) {
    dalle_job *job = (dalle_job *)((char *)t - offsetof(dalle_job, task));
    if (job->status == 0)
        encode_result(job, enc);
    free(job->rgb);
    job->rgb = NULL;
    job->done(job);
}

/* Hand the job to its pool lane: status 0 = decoded, to encode; else answered already. */
static void finish(dalle_scheduler *s, dalle_job *job) {
    job->task.run = finish_task;
    dalle_encode_pool_submit(s->srv->pool, job->lane, &job->task);
}

/* ---- previews ------------------------------------------------------------------------ */

typedef struct {
    dalle_pool_task task; /* first */
    dalle_job *job;
    int step, steps, n;
    uint8_t rgb[]; /* [n, R, R, 3] */
} preview_task;

static void preview_run(dalle_pool_task *t, dalle_jpeg_encoder *enc) {
    preview_task *p = (preview_task *)t;
    dalle_job *job = p->job;
    const dalle_server *srv = job->sched->srv;
    const int n = p->n, R = srv->info.image_size;
    const int quality =
        job->req.quality < DALLE_PREVIEW_MAX_QUALITY ? job->req.quality : DALLE_PREVIEW_MAX_QUALITY;
    dalle_result r = {.n_images = n, .width = R, .height = R};
    r.images = calloc((size_t)n, sizeof *r.images);
    dalle_error err = {0};
    dalle_subsamp ss;
    if (r.images && !atomic_load(&job->abandoned) &&
        dalle_jpeg_subsamp_from(job->req.subsampling, &ss, &err) == DALLE_OK &&
        dalle_jpeg_encode_images(enc, p->rgb, n, R, quality, ss, NULL, NULL, r.images, &err) ==
            DALLE_OK) {
        size_t len = 0;
        char *body = dalle_preview_body(&r, p->step, p->steps, &len);
        if (body)
            job->preview(job, body, len);
        free(body);
    }
    dalle_result_free(&r);
    free(p);
}

/* Decode the job's codes so far for a preview (dalle_job_preview): the running part's
 * images, after those of a request's finished parts (by index). A preview is optional: when
 * memory or the VQGAN fails, it is skipped. */
static void preview(dalle_scheduler *s, dalle_job *job, int step, int steps) {
    const size_t px = (size_t)s->srv->info.image_size * s->srv->info.image_size * 3;
    const int n = job->part_first + job->part_n;
    preview_task *p = malloc(sizeof *p + (size_t)n * px);
    if (!p)
        return;
    memcpy(p->rgb, job->rgb, (size_t)job->part_first * px);
    dalle_error err = {0};
    if (dalle_job_preview(s->state, job->handle, p->rgb + (size_t)job->part_first * px, &err) !=
        DALLE_OK) {
        fprintf(stderr, "preview id=%s step=%d skipped: %s\n", job->id, step, err.msg);
        free(p);
        return;
    }
    p->task.run = preview_run;
    p->job = job;
    p->step = step;
    p->steps = steps;
    p->n = n;
    dalle_encode_pool_submit(s->srv->pool, job->lane, &p->task);
}

/* ---- the queue ------------------------------------------------------------------------ */

/* Requests in parts: a request of more than --max-batch images runs as parts of at most
 * --max-batch images, one after another (each part is one engine job; image i of the request
 * keeps its RNG stream through dalle_gen_params.first_image, so on a batch-invariant backend
 * its images are those of one job of n images). A part's images are kept by index; after the
 * last part the request is ranked as the engine ranks one job (score, then index). */
static int in_parts(const dalle_scheduler *s, const dalle_job *job) {
    return job->req.gen.n_images > s->srv->cfg.max_batch;
}

/* Images of the request's first part: what the state must have room for to admit it. */
static int first_part(const dalle_scheduler *s, const dalle_job *job) {
    return in_parts(s, job) ? (int)s->srv->cfg.max_batch : job->req.gen.n_images;
}

/* The reason a queued job must not run, or 0 (fails it). */
static int reject_queued(dalle_scheduler *s, dalle_job *job) {
    if (atomic_load(&job->abandoned) || client_gone(job->fd)) {
        fail(s->srv, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0,
             "the client closed the connection");
        return 1;
    }
    if (dalle_server_now_ms() - job->t_submit > (double)s->srv->cfg.deadline * 1e3) {
        fail(s->srv, job, DALLE_FAIL_TIMEOUT, 503, "timeout", 1,
             "the request waited in the queue past its deadline");
        return 1;
    }
    return 0;
}

/* Take the job out of the queue's counters. Called with mu held. */
static void dequeued(dalle_scheduler *s, dalle_job *job) {
    s->queued--;
    s->queued_images -= job->req.gen.n_images;
}

/* Remove queued jobs that must not run; returns them as a list. Called with mu held. */
static dalle_job *sweep_queue(dalle_scheduler *s) {
    dalle_job *dropped = NULL, **link = &s->head;
    s->tail = NULL;
    while (*link) {
        dalle_job *job = *link;
        if (reject_queued(s, job)) {
            *link = job->next;
            job->next = dropped;
            dropped = job;
            dequeued(s, job);
        } else {
            s->tail = job;
            link = &job->next;
        }
    }
    return dropped;
}

/* Pop the head job if the state has room for it now. Called with mu held. */
static dalle_job *pop_if_fits(dalle_scheduler *s) {
    dalle_job *job = s->head;
    if (!job || dalle_state_free_prompts(s->state) < 1 ||
        dalle_state_free_images(s->state) < first_part(s, job))
        return NULL;
    s->head = job->next;
    if (!s->head)
        s->tail = NULL;
    dequeued(s, job);
    return job;
}

/* Empty the queue and refuse new jobs; returns the jobs that were queued. */
static dalle_job *close_queue(dalle_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    dalle_job *job = s->head;
    s->head = s->tail = NULL;
    s->queued = s->queued_images = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return job;
}

/* ---- the scheduler thread --------------------------------------------------------------- */

/* dalle_job_start of the part from job->part_first; returns 1 when it runs, else the job is
 * finished with an error. */
static int start_part(dalle_scheduler *s, dalle_job *job) {
    const int n = job->req.gen.n_images, rest = n - job->part_first;
    dalle_error err = {0};
    dalle_gen_params gen = job->req.gen;
    gen.n_images = job->part_n = rest < s->srv->cfg.max_batch ? rest : (int)s->srv->cfg.max_batch;
    gen.first_image = job->part_first;
    gen.should_stop = should_stop;
    gen.user = job;
    const double t0 = dalle_server_now_ms();
    s->starting = job;
    dalle_status st = dalle_job_start(s->state, &job->text, &gen, &job->handle, &err);
    s->starting = NULL;
    job->text_ms += dalle_server_now_ms() - t0;
    if (st == DALLE_OK && job->handle < 0)
        st = dalle_error_set(&err, DALLE_ERR_BACKEND, "the state had no room for an admitted job");
    if (st != DALLE_OK) {
        if (st == DALLE_ERR_INVALID_ARG)
            fail(s->srv, job, DALLE_FAIL_VALIDATION, 422, "invalid_prompt", 0, err.msg);
        else
            fail(s->srv, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
        finish(s, job);
        return 0;
    }
    s->running[s->n_running++] = job;
    atomic_fetch_add(&s->in_flight, 1);
    atomic_fetch_add(&s->batch_images, job->part_n);
    return 1;
}

/* A request taken from the queue: it runs (its first part), or is finished with an error. */
static void start(dalle_scheduler *s, dalle_job *job) {
    const int R = s->srv->info.image_size, n = job->req.gen.n_images;
    job->rgb = malloc((size_t)n * R * R * 3);
    if (!job->rgb) {
        fail(s->srv, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0, "out of memory");
        finish(s, job);
        return;
    }
    job->t_admit = dalle_server_now_ms();
    job->part_first = 0;
    if (start_part(s, job))
        job->t_start = dalle_server_now_ms();
}

/* The ranking of a request whose parts are all done: order by score (best first), ties by
 * index, as the engine orders one job; rgb and scores follow. Unranked: by index as is. */
static dalle_status rank_parts(dalle_job *job, int R, dalle_error *err) {
    const int n = job->req.gen.n_images;
    const size_t px = (size_t)R * R * 3;
    float by_index[DALLE_SERVER_MAX_IMAGES];
    memcpy(by_index, job->scores, (size_t)n * sizeof *by_index);
    if (job->req.rank)
        dalle_rank_order(by_index, n, job->order);
    else
        for (int k = 0; k < n; k++)
            job->order[k] = k;
    uint8_t *ranked = malloc((size_t)n * px);
    if (!ranked)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        memcpy(ranked + k * px, job->rgb + job->order[k] * px, px);
        job->scores[k] = by_index[job->order[k]];
    }
    free(job->rgb);
    job->rgb = ranked;
    return DALLE_OK;
}

/* A part whose decode is done: the engine finishes it (dalle_job_finish: VQGAN, CLIP, ranked
 * pixels); the pool does the rest once the request is complete. Returns 1 when another part
 * of the request must run. */
static int complete(dalle_scheduler *s, dalle_job *job) {
    const int R = s->srv->info.image_size, n = job->req.gen.n_images, first = job->part_first;
    const size_t px = (size_t)R * R * 3;
    dalle_error err = {0};
    const double t0 = dalle_server_now_ms();
    job->decode_ms = t0 - job->t_start - job->vqgan_ms - job->clip_ms;
    dalle_timings tm = {0};
    const int parts = in_parts(s, job);
    float scores[DALLE_SERVER_MAX_BATCH];
    int32_t order[DALLE_SERVER_MAX_BATCH];
    uint8_t *rgb = parts ? malloc((size_t)job->part_n * px) : job->rgb;
    const dalle_job_output out = {NULL, rgb, parts ? order : job->order,
                                  parts ? scores : job->scores};
    dalle_status st =
        rgb ? dalle_job_finish(s->state, job->handle, job->req.rank ? job->text.clip_ids : NULL,
                               &out, &tm, &err)
            : dalle_error_set(&err, DALLE_ERR_NOMEM, "out of memory");
    if (!rgb)
        dalle_job_release(s->state, job->handle);
    job->vqgan_ms += tm.vqgan_ms;
    job->clip_ms += tm.clip_ms;
    if (st == DALLE_OK && parts) {
        for (int k = 0; k < job->part_n; k++) { // the part's images by request index
            memcpy(job->rgb + (first + order[k]) * px, rgb + k * px, px);
            job->scores[first + order[k]] = scores[k];
        }
        job->part_first += job->part_n;
        if (job->part_first < n) {
            free(rgb);
            return 1;
        }
        st = rank_parts(job, R, &err);
    }
    if (parts)
        free(rgb);
    if (st != DALLE_OK)
        fail(s->srv, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
    return 0;
}

/* After a step: progress and previews of the running jobs; answer and release the jobs
 * that are done or were cancelled. */
static void collect(dalle_scheduler *s) {
    const int P = s->srv->info.image_length;
    int kept = 0;
    for (int i = 0; i < s->n_running; i++) {
        dalle_job *job = s->running[i];
        const int progress = dalle_job_progress(s->state, job->handle);
        if (progress >= 0 && progress < P) {
            s->running[kept++] = job;
            continue;
        }
        job->decoded = progress == P;
        if (!job->decoded) /* cancelled; a done job's handle is freed by dalle_job_finish */
            dalle_job_release(s->state, job->handle);
        atomic_fetch_sub(&s->in_flight, 1);
        atomic_fetch_sub(&s->batch_images, job->part_n);
        s->finishing[s->n_finishing++] = job;
    }
    s->n_running = kept;
    for (int i = 0; i < s->n_running; i++) {
        dalle_job *job = s->running[i];
        const int progress = dalle_job_progress(s->state, job->handle);
        const int B = (int)s->srv->cfg.max_batch, n = job->req.gen.n_images;
        const int step = job->part_first / B * P + progress, steps = (n + B - 1) / B * P;
        if (job->progress && progress % DALLE_PROGRESS_EVERY == 0)
            job->progress(job, step, steps);
        if (job->req.preview_every && progress % job->req.preview_every == 0)
            preview(s, job, step, steps);
    }
    for (; s->finish_next < s->n_finishing; s->finish_next++) {
        dalle_job *job = s->finishing[s->finish_next];
        if (job->decoded) {
            if (complete(s, job)) { /* its next part joins the batch now */
                start_part(s, job);
                continue;
            }
        } else if (job->no_memory)
            fail(s->srv, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0,
                 "the device ran out of working memory");
        else if (job->gone)
            fail(s->srv, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0,
                 "the client closed the connection");
        else
            fail_stopped(s, job, 1);
        finish(s, job);
    }
    s->n_finishing = s->finish_next = 0;
}

/* The state is made on the thread that drives it, so that a GPU backend binds this thread
 * to its device (a CUDA stream only takes work from a thread whose current device is the
 * stream's). */
static int init_state(dalle_scheduler *s) {
    const int B = (int)s->srv->cfg.max_batch;
    dalle_state_params sp = {.max_images = B, .max_prompts = B};
    const dalle_status st = dalle_state_new(&s->state, s->model, &sp, &s->init_err);
    s->init_err.status = st;
    pthread_mutex_lock(&s->mu);
    s->init_done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return st == DALLE_OK;
}

static void *scheduler_main(void *arg) {
    dalle_scheduler *s = arg;
    if (!init_state(s))
        return NULL;
    this_scheduler = s;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->n_running && !s->closing)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head && !s->n_running) { /* closing, nothing left */
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        dalle_job *dropped = sweep_queue(s);
        pthread_mutex_unlock(&s->mu);
        while (dropped) {
            dalle_job *next = dropped->next;
            finish(s, dropped);
            dropped = next;
        }
        for (;;) {
            pthread_mutex_lock(&s->mu);
            dalle_job *job = pop_if_fits(s);
            pthread_mutex_unlock(&s->mu);
            if (!job)
                break;
            start(s, job);
        }
        if (s->n_running) {
            dalle_metrics_batch(s->srv->metrics, atomic_load(&s->batch_images));
            if (dalle_state_step(s->state) != DALLE_OK) /* every running job was stopped */
                for (int i = 0; i < s->n_running; i++)
                    s->running[i]->no_memory = 1;
            collect(s);
        }
    }
}

static void destroy(dalle_scheduler *s) {
    dalle_state_free(s->state);
    free(s->running);
    free(s->finishing);
    free(s);
}

dalle_status dalle_scheduler_new(dalle_scheduler **out, dalle_server *srv, dalle_model *model,
                                 dalle_error *err) {
    dalle_scheduler *s = calloc(1, sizeof *s);
    if (!s)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    s->srv = srv;
    s->model = model;
    s->capacity = (int)srv->cfg.queue;
    dalle_model_info info;
    dalle_model_get_info(model, &info);
    const int B = (int)srv->cfg.max_batch;
    dalle_status st = DALLE_OK;
    if (!info.has_vqgan)
        st = dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "the model has no VQGAN (files.vqgan)");
    if (st == DALLE_OK) {
        s->running = calloc((size_t)B, sizeof *s->running);
        s->finishing = calloc((size_t)B, sizeof *s->finishing);
        if (!s->running || !s->finishing)
            st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    if (st != DALLE_OK) {
        destroy(s);
        return st;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_main, s)) {
        dalle_scheduler_free(s);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "cannot start the scheduler thread");
    }
    pthread_mutex_lock(&s->mu);
    while (!s->init_done)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (!s->state) {
        pthread_join(s->thread, NULL);
        if (err)
            *err = s->init_err;
        st = s->init_err.status;
        dalle_scheduler_free(s);
        return st;
    }
    *out = s;
    return DALLE_OK;
}

dalle_submit_result dalle_scheduler_submit(dalle_scheduler *s, dalle_job *job, int *position) {
    dalle_submit_result r = DALLE_SUBMIT_OK;
    job->next = NULL;
    job->sched = s;
    job->lane = dalle_encode_pool_lane(s->srv->pool);
    pthread_mutex_lock(&s->mu);
    if (s->closing)
        r = DALLE_SUBMIT_CLOSED;
    else if (s->queued >= s->capacity)
        r = DALLE_SUBMIT_FULL;
    else {
        if (s->tail)
            s->tail->next = job;
        else
            s->head = job;
        s->tail = job;
        s->queued++;
        s->queued_images += job->req.gen.n_images;
        *position = s->queued;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

dalle_submit_result dalle_scheduler_dispatch(dalle_server *srv, dalle_job *job, int *position) {
    const int n = atomic_load(&srv->n_sched);
    int load[DALLE_SERVER_MAX_DEVICES], queued[DALLE_SERVER_MAX_DEVICES];
    int tried[DALLE_SERVER_MAX_DEVICES] = {0};
    for (int i = 0; i < n; i++) {
        dalle_scheduler *s = srv->sched[i];
        pthread_mutex_lock(&s->mu);
        load[i] = s->queued_images;
        queued[i] = s->queued;
        pthread_mutex_unlock(&s->mu);
        load[i] += atomic_load(&s->batch_images);
    }
    int full = 0;
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!tried[i] && (best < 0 || load[i] < load[best] ||
                              (load[i] == load[best] && queued[i] < queued[best])))
                best = i;
        tried[best] = 1;
        const dalle_submit_result r = dalle_scheduler_submit(srv->sched[best], job, position);
        if (r == DALLE_SUBMIT_OK)
            return r;
        full |= r == DALLE_SUBMIT_FULL;
    }
    return full ? DALLE_SUBMIT_FULL : DALLE_SUBMIT_CLOSED;
}

void dalle_scheduler_stats(dalle_scheduler *s, int *queued, int *capacity, int *in_flight,
                           int *batch_images) {
    pthread_mutex_lock(&s->mu);
    *queued = s->queued;
    *capacity = s->capacity;
    pthread_mutex_unlock(&s->mu);
    *in_flight = atomic_load(&s->in_flight);
    *batch_images = atomic_load(&s->batch_images);
}

void dalle_scheduler_drain(dalle_scheduler *s, double drain_s, int fault) {
    atomic_store(&s->stop_fault, fault);
    atomic_store(&s->stop_at_ms, dalle_server_now_ms() + drain_s * 1e3 + 1);
    for (dalle_job *job = close_queue(s), *next; job; job = next) {
        next = job->next;
        fail_stopped(s, job, 0);
        finish(s, job);
    }
    for (;;) { /* join, unless the thread is parked by a device fault (now or meanwhile) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        if (pthread_timedjoin_np(s->thread, NULL, &ts) != ETIMEDOUT)
            return;
        if (atomic_load(&s->parked))
            return;
    }
}

int dalle_scheduler_fault_here(void) {
    dalle_scheduler *s = this_scheduler;
    if (!s)
        return 0;
    this_scheduler = NULL;
    atomic_store(&s->stop_fault, 1);
    for (dalle_job *job = close_queue(s), *next; job; job = next) {
        next = job->next;
        fail_device(s->srv, job);
        finish(s, job);
    }
    dalle_job *held[1 + 2 * DALLE_SERVER_MAX_BATCH];
    int n = 0;
    if (s->starting)
        held[n++] = s->starting;
    for (int i = 0; i < s->n_running; i++)
        held[n++] = s->running[i];
    for (int i = s->finish_next; i < s->n_finishing; i++)
        held[n++] = s->finishing[i];
    s->starting = NULL;
    s->n_running = s->n_finishing = s->finish_next = 0;
    atomic_store(&s->in_flight, 0);
    atomic_store(&s->batch_images, 0);
    for (int i = 0; i < n; i++) {
        fail_device(s->srv, held[i]);
        finish(s, held[i]);
    }
    atomic_store(&s->parked, 1); /* the caller parks the thread: it submits nothing more */
    return 1;
}

void dalle_scheduler_free(dalle_scheduler *s) {
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    destroy(s);
}
