/* scheduler.c — bounded FIFO of generation jobs and the one thread that runs them
 * (scheduler.h).
 *
 * DESIGN
 * ------
 * HTTP threads validate a request and call dalle_scheduler_submit, which appends the job
 * to a FIFO under `mu` if fewer than `capacity` jobs wait (the check and the append are one
 * critical section, so bursts cannot overshoot the bound). One scheduler thread owns the
 * dalle_state (max_images = --max-batch): it pops the oldest job, drops it unrun when its
 * client has hung up or it waited past --deadline (503), otherwise runs the whole pipeline
 * (dalle_generate: text → codes → VQGAN → CLIP → JPEG) and encodes the JSON response, then
 * hands the job back through job->done, which resumes the suspended connection.
 *
 * Cancellation: between decode steps the engine calls should_stop, which polls the
 * client's socket for POLLRDHUP/POLLHUP (a suspended MHD connection does not notice a
 * hang-up by itself) and checks the drain deadline; the engine then stops at once and the
 * state is free for the next job.
 *
 * Shutdown (dalle_scheduler_drain): `closing` makes submit refuse; the queued jobs are
 * taken out and failed with 503 by the caller; the running job may finish until the drain
 * deadline, after which should_stop cancels it; then the thread exits and is joined.
 *
 * This first version runs one request at a time (dalle_generate per job); the
 * iteration-level job API of dalle.h (dalle_job_start/step) replaces run_job here, behind
 * the same submit/done interface.
 */
#include "server/scheduler.h"

#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/metrics.h"

struct dalle_scheduler {
    dalle_server *srv;
    dalle_state *state;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dalle_job *head, *tail; /* guarded by mu */
    int queued, capacity;   /* guarded by mu */
    int closing;            /* guarded by mu */
    atomic_int in_flight;
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

typedef struct {
    dalle_scheduler *s;
    dalle_job *job;
    int gone; /* set when the client hung up */
} stop_ctx;

static int should_stop(void *user) {
    stop_ctx *c = user;
    const double at = atomic_load(&c->s->stop_at_ms);
    if (at > 0 && dalle_server_now_ms() > at) return 1;
    return c->gone = client_gone(c->job->fd);
}

/* Finish job with an error body. */
static void fail(dalle_scheduler *s, dalle_job *job, dalle_failure kind, int status,
                 const char *code, int retry_after, const char *msg) {
    dalle_http_error e;
    dalle_http_error_set(&e, status, code, NULL, "%s", msg);
    job->status = status;
    job->retry_after = retry_after;
    job->body = dalle_error_body(&e, &job->body_len);
    dalle_metrics_failure(s->srv->metrics, kind);
}

static void run_job(dalle_scheduler *s, dalle_job *job) {
    dalle_server *srv = s->srv;
    const double queue_ms = dalle_server_now_ms() - job->t_submit;
    if (client_gone(job->fd)) {
        fail(s, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0, "the client closed the connection");
        return;
    }
    if (queue_ms > (double)srv->cfg.deadline * 1e3) {
        fail(s, job, DALLE_FAIL_TIMEOUT, 503, "timeout", 1,
             "the request waited in the queue past its deadline");
        return;
    }
    stop_ctx stop = {s, job, 0};
    dalle_gen_params gen = job->req.gen;
    gen.should_stop = should_stop;
    gen.user = &stop;
    dalle_output_params o;
    dalle_output_params_default(srv->model, &o);
    o.rank = job->req.rank;
    o.jpeg_quality = job->req.quality;
    dalle_result r;
    dalle_error err = {0};
    dalle_status st =
        dalle_generate(s->state, job->req.prompt, job->req.prompt_len, &gen, &o, &r, &err);
    if (st == DALLE_OK) {
        job->status = 200;
        job->images = r.n_images;
        job->body = dalle_response_body(srv, &job->req, job->id, &r, queue_ms, &job->body_len);
        dalle_metrics_generated(srv->metrics, r.n_images, r.n_images * srv->info.image_length,
                                queue_ms / 1e3);
        dalle_result_free(&r);
        if (!job->body)
            fail(s, job, DALLE_FAIL_GENERATION, 500, "out_of_memory", 0, "out of memory");
    } else if (st == DALLE_ERR_CANCELLED && stop.gone) {
        fail(s, job, DALLE_FAIL_CANCELLED, 499, "cancelled", 0, "the client closed the connection");
    } else if (st == DALLE_ERR_CANCELLED) {
        fail(s, job, DALLE_FAIL_SHUTDOWN, 503, "shutting_down", 1,
             "the server is shutting down; the generation was stopped");
    } else if (st == DALLE_ERR_INVALID_ARG) {
        fail(s, job, DALLE_FAIL_VALIDATION, 422, "invalid_prompt", 0, err.msg);
    } else {
        fail(s, job, DALLE_FAIL_GENERATION, 500, "generation", 0, err.msg);
    }
}

static void *scheduler_main(void *arg) {
    dalle_scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->closing) pthread_cond_wait(&s->cv, &s->mu);
        dalle_job *job = s->head;
        if (job) {
            s->head = job->next;
            if (!s->head) s->tail = NULL;
            s->queued--;
            atomic_store(&s->in_flight, 1);
        }
        pthread_mutex_unlock(&s->mu);
        if (!job) return NULL;
        run_job(s, job);
        atomic_store(&s->in_flight, 0);
        job->done(job);
    }
}

dalle_status dalle_scheduler_new(dalle_scheduler **out, dalle_server *srv, dalle_error *err) {
    dalle_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->status = DALLE_ERR_NOMEM;
    }
    s->srv = srv;
    s->capacity = (int)srv->cfg.queue;
    dalle_state_params sp = {.max_images = (int)srv->cfg.max_batch, .max_prompts = 1};
    dalle_status st = dalle_state_new(&s->state, srv->model, &sp, err);
    if (st != DALLE_OK) {
        free(s);
        return st;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_main, s)) {
        dalle_state_free(s->state);
        free(s);
        snprintf(err->msg, sizeof err->msg, "cannot start the scheduler thread");
        return err->status = DALLE_ERR_NOMEM;
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

void dalle_scheduler_stats(dalle_scheduler *s, int *queued, int *capacity, int *in_flight) {
    pthread_mutex_lock(&s->mu);
    *queued = s->queued;
    *capacity = s->capacity;
    pthread_mutex_unlock(&s->mu);
    *in_flight = atomic_load(&s->in_flight);
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
    dalle_state_free(s->state);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
