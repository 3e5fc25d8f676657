/* scheduler.c — bounded FIFO of generation jobs and the thread that runs them with
 * iteration-level batching (scheduler.h).
 *
 * DESIGN
 * ------
 * HTTP threads validate a request, encode its text and call dalle_scheduler_submit, which
 * appends the job to a FIFO under `mu` if fewer than `capacity` jobs wait (check and
 * append are one critical section, so bursts cannot overshoot the bound).
 *
 * One scheduler thread owns the dalle_state (max_images = max_prompts = --max-batch) and
 * loops: (1) sweep the queue, failing jobs whose client hung up (499, never run) or that
 * waited past --deadline (503 timeout, never run); (2) admit queued jobs in FIFO order while
 * the state has room for the head job's n images and a prompt block (dalle_job_start runs
 * its BART encoder; a job that does not fit yet blocks the ones behind it, so large
 * requests are not starved); (3) one decode step of every running image
 * (dalle_state_step); (4) collect the jobs whose images are done: VQGAN (dalle_decode_codes),
 * CLIP ranking, JPEG + base64, JSON; then job->done resumes the suspended connection.
 * A new request therefore waits at most one step for free room, never for a whole batch.
 *
 * Cancellation: dalle_state_step polls each running job's should_stop, which polls the
 * client's socket for POLLRDHUP/POLLHUP (suspended MHD connections do not notice hang-ups)
 * and checks the drain deadline; the engine frees the job's rows for the next step and
 * dalle_job_progress reports -1, upon which the job is answered and released.
 *
 * Shutdown (dalle_scheduler_drain): `closing` makes submit refuse; the queued jobs are taken
 * out and failed with 503 by the caller; running jobs may finish until the drain deadline,
 * after which should_stop cancels them (503); then the thread exits and is joined.
 *
 * Threads: `mu` guards the queue, its counters and `closing`; the state, the running list,
 * the RGB buffer and the JPEG encoder are the scheduler thread's alone; the gauges read by
 * /metrics are atomics.
 */
#include "server/scheduler.h"

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
    dalle_state *state;
    dalle_jpeg_encoder *jpeg;
    uint8_t *rgb; /* [max_batch, R, R, 3] */
    dalle_job **running;
    int n_running;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dalle_job *head, *tail; /* guarded by mu */
    int queued, capacity;   /* guarded by mu */
    int closing;            /* guarded by mu */
    atomic_int in_flight, batch_images;
    _Atomic double stop_at_ms; /* drain deadline; 0 = none */
};

double dalle_server_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int should_stop(void *user) {
    dalle_job *job = user;
    const double at = atomic_load(&job->sched->stop_at_ms);
    if (at > 0 && dalle_server_now_ms() > at) return 1;
    return job->gone = atomic_load(&job->abandoned) || client_gone(job->fd);
}

/* Give the job an error body. */
static void fail(dalle_scheduler *s, dalle_job *job, dalle_failure kind, int status,
                 const char *code, int retry_after, const char *msg) {
    dalle_http_error e;
    dalle_http_error_set(&e, status, code, NULL, "%s", msg);
    job->status = status;
    job->retry_after = retry_after;
    job->body = dalle_error_body(&e, &job->body_len);
    dalle_metrics_failure(s->srv->metrics, kind);
}

/* The reason a queued job must not run, or 0 (fails it). */
static int reject_queued(dalle_scheduler *s, dalle_job *job) {
    if (atomic_load(&job->abandoned) || client_gone(job->fd)) {
        fail(s, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0, "the client closed the connection");
        return 1;
    }
    if (dalle_server_now_ms() - job->t_submit > (double)s->srv->cfg.deadline * 1e3) {
        fail(s, job, DALLE_FAIL_TIMEOUT, 503, "timeout",
             1, "the request waited in the queue past its deadline");
        return 1;
    }
    return 0;
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
            s->queued--;
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
        dalle_state_free_images(s->state) < job->req.gen.n_images)
        return NULL;
    s->head = job->next;
    if (!s->head) s->tail = NULL;
    s->queued--;
    return job;
}

static void finish(dalle_job *job) {
    free(job->codes);
    job->codes = NULL;
    job->done(job);
}

/* dalle_job_start; the job runs, or is finished with an error. */
static void start(dalle_scheduler *s, dalle_job *job) {
    const int P = s->srv->info.image_length, n = job->req.gen.n_images;
    dalle_error err = {0};
    dalle_gen_params gen = job->req.gen;
    gen.should_stop = should_stop;
    gen.user = job;
    job->sched = s;
    job->codes = malloc((size_t)n * P * sizeof *job->codes);
    if (!job->codes) {
        fail(s, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0, "out of memory");
        finish(job);
        return;
    }
    const double t0 = job->t_admit = dalle_server_now_ms();
    dalle_status st = dalle_job_start(s->state, &job->text, &gen, job->codes, &job->handle, &err);
    job->t_start = dalle_server_now_ms();
    job->text_ms += job->t_start - t0;
    if (st == DALLE_OK && job->handle < 0)
        st = dalle_error_set(&err, DALLE_ERR_BACKEND, "the state had no room for an admitted job");
    if (st != DALLE_OK) {
        if (st == DALLE_ERR_INVALID_ARG)
            fail(s, job, DALLE_FAIL_VALIDATION, 422, "invalid_prompt", 0, err.msg);
        else fail(s, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
        finish(job);
        return;
    }
    s->running[s->n_running++] = job;
    atomic_fetch_add(&s->in_flight, 1);
    atomic_fetch_add(&s->batch_images, n);
}

/* Codes → VQGAN → CLIP → JPEG → JSON for a job whose decode is done. */
static void complete(dalle_scheduler *s, dalle_job *job) {
    const dalle_server *srv = s->srv;
    const int n = job->req.gen.n_images, R = srv->info.image_size;
    dalle_error err = {0};
    dalle_result r = {.n_images = n, .width = R, .height = R, .ranked = job->req.rank};
    r.timings.text_ms = job->text_ms;
    const double t0 = dalle_server_now_ms();
    r.timings.decode_ms = t0 - job->t_start;
    float scores[DALLE_SERVER_MAX_BATCH] = {0};
    int32_t order[DALLE_SERVER_MAX_BATCH];
    for (int i = 0; i < n; i++) order[i] = i;
    dalle_status st = dalle_decode_codes(s->state, job->codes, n, s->rgb, &err);
    const double t1 = dalle_server_now_ms();
    if (st == DALLE_OK && job->req.rank) {
        const uint8_t *rgb[DALLE_SERVER_MAX_BATCH];
        int side[DALLE_SERVER_MAX_BATCH];
        for (int i = 0; i < n; i++) rgb[i] = s->rgb + (size_t)i * R * R * 3, side[i] = R;
        st = dalle_rank_images(s->state, job->text.clip_ids, rgb, side, side, n, scores, order,
                               &err);
    }
    const double t2 = dalle_server_now_ms();
    r.images = calloc((size_t)n, sizeof *r.images);
    if (st == DALLE_OK && !r.images) st = dalle_error_set(&err, DALLE_ERR_NOMEM, "out of memory");
    for (int k = 0; st == DALLE_OK && k < n; k++) {
        const uint8_t *jpg;
        size_t size;
        st = dalle_jpeg_encode(s->jpeg, s->rgb + (size_t)order[k] * R * R * 3, R, R,
                               job->req.quality, DALLE_SUBSAMP_420, &jpg, &size, &err);
        dalle_image *im = &r.images[k];
        if (st == DALLE_OK && !(im->jpeg = malloc(size)))
            st = dalle_error_set(&err, DALLE_ERR_NOMEM, "out of memory");
        if (st != DALLE_OK) break;
        memcpy(im->jpeg, jpg, size);
        im->jpeg_size = size;
        im->index = order[k];
        im->score = scores[order[k]];
    }
    const double t3 = dalle_server_now_ms();
    r.timings.vqgan_ms = t1 - t0;
    r.timings.clip_ms = t2 - t1;
    r.timings.jpeg_ms = t3 - t2;
    r.timings.total_ms = job->text_ms + (t3 - job->t_start);
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
            fail(s, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0, "out of memory");
    } else {
        fail(s, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
    }
    dalle_result_free(&r);
}

/* After a step: answer and release the jobs that are done or were cancelled. */
static void collect(dalle_scheduler *s) {
    const int P = s->srv->info.image_length;
    int kept = 0;
    for (int i = 0; i < s->n_running; i++) {
        dalle_job *job = s->running[i];
        const int progress = dalle_job_progress(s->state, job->handle);
        if (progress >= 0 && progress < P) {
            s->running[kept++] = job;
            if (job->progress && progress % DALLE_PROGRESS_EVERY == 0)
                job->progress(job, progress, P);
            continue;
        }
        dalle_job_release(s->state, job->handle);
        atomic_fetch_sub(&s->in_flight, 1);
        atomic_fetch_sub(&s->batch_images, job->req.gen.n_images);
        if (progress == P) complete(s, job);
        else if (job->gone)
            fail(s, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0,
                 "the client closed the connection");
        else
            fail(s, job, DALLE_FAIL_SHUTDOWN, 503, "shutting_down", 1,
                 "the server is shutting down; the generation was stopped");
        finish(job);
    }
    s->n_running = kept;
}

static void *scheduler_main(void *arg) {
    dalle_scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->n_running && !s->closing) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head && !s->n_running) { /* closing, nothing left */
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        dalle_job *dropped = sweep_queue(s);
        pthread_mutex_unlock(&s->mu);
        while (dropped) {
            dalle_job *next = dropped->next;
            finish(dropped);
            dropped = next;
        }
        for (;;) {
            pthread_mutex_lock(&s->mu);
            dalle_job *job = pop_if_fits(s);
            pthread_mutex_unlock(&s->mu);
            if (!job) break;
            start(s, job);
        }
        if (s->n_running) {
            dalle_metrics_batch(s->srv->metrics, atomic_load(&s->batch_images));
            dalle_state_step(s->state);
            collect(s);
        }
    }
}

static void destroy(dalle_scheduler *s) {
    dalle_jpeg_encoder_free(s->jpeg);
    dalle_state_free(s->state);
    free(s->rgb);
    free(s->running);
    free(s);
}

dalle_status dalle_scheduler_new(dalle_scheduler **out, dalle_server *srv, dalle_error *err) {
    dalle_scheduler *s = calloc(1, sizeof *s);
    if (!s) return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    s->srv = srv;
    s->capacity = (int)srv->cfg.queue;
    const int B = (int)srv->cfg.max_batch, R = srv->info.image_size;
    dalle_state_params sp = {.max_images = B, .max_prompts = B};
    dalle_status st = DALLE_OK;
    if (!srv->info.has_vqgan)
        st = dalle_error_set(err, DALLE_ERR_UNSUPPORTED, "the model has no VQGAN (files.vqgan)");
    if (st == DALLE_OK) st = dalle_state_new(&s->state, srv->model, &sp, err);
    if (st == DALLE_OK) st = dalle_jpeg_encoder_new(&s->jpeg, err);
    if (st == DALLE_OK) {
        s->rgb = malloc((size_t)B * R * R * 3);
        s->running = calloc((size_t)B, sizeof *s->running);
        if (!s->rgb || !s->running) st = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
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
    *out = s;
    return DALLE_OK;
}

dalle_submit_result dalle_scheduler_submit(dalle_scheduler *s, dalle_job *job) {
    dalle_submit_result r = DALLE_SUBMIT_OK;
    job->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->closing) r = DALLE_SUBMIT_CLOSED;
    else if (s->queued >= s->capacity) r = DALLE_SUBMIT_FULL;
    else {
        if (s->tail) s->tail->next = job;
        else s->head = job;
        s->tail = job;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
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

void dalle_scheduler_drain(dalle_scheduler *s, double drain_s) {
    atomic_store(&s->stop_at_ms, dalle_server_now_ms() + drain_s * 1e3 + 1);
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    dalle_job *job = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    while (job) {
        dalle_job *next = job->next;
        fail(s, job, DALLE_FAIL_SHUTDOWN, 503, "shutting_down", 1,
             "the server is shutting down; the request was not run");
        job->done(job);
        job = next;
    }
    pthread_join(s->thread, NULL);
}

void dalle_scheduler_free(dalle_scheduler *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    destroy(s);
}
