/* http.c — libmicrohttpd front end: routing, CORS, request bodies, suspend/resume, access
 * log (http.h).
 *
 * DESIGN
 * ------
 * MHD runs an internal poll(2) thread pool (--http-threads) with MHD_ALLOW_SUSPEND_RESUME.
 * Not epoll: with epoll, MHD 0.9.75's MHD_quiesce_daemon and a busy pool thread both take the
 * listening socket out of the thread's epoll set, and the loser aborts the process ("Failed
 * to remove listen FD from epoll set"), so a SIGTERM under traffic could lose every
 * in-flight response. With poll each thread leaves the socket out of its own next poll.
 * Quiesce then shuts the listening socket down: new connections are refused at once and
 * those still in the backlog are reset, instead of waiting out the drain unanswered (a pool
 * thread that polls it once more gets EINVAL from accept, which MHD ignores).
 * Every request gets a request_ctx on the first handler call (headers only), which first
 * checks what every request must satisfy: no control byte in the raw path, Host with
 * HTTP/1.1, the framing headers (a repeated Content-Length, Content-Length with
 * Transfer-Encoding, a repeated Transfer-Encoding → 400; a Transfer-Encoding other than
 * chunked → 501; a Content-Length over --body-limit → 413 at once). GET routes, OPTIONS,
 * 404 and 405 are answered then. POST /generate and /dalle collect the body chunk by chunk,
 * counting bytes so chunked bodies are capped as well: the call that passes --body-limit
 * writes the 413 straight to the socket (conn_guard.c; MHD cannot queue a response
 * mid-body) and returns MHD_NO, which closes the connection. Connection limits and receive
 * deadlines are conn_guard.c's, told by the handler when a request is complete or answered
 * and by NOTIFY_COMPLETED when its response is sent. On the last call the body is parsed
 * (request.c); errors are answered at once, a valid request becomes a dalle_job that is
 * dispatched to the least-loaded scheduler and its connection suspended.
 *
 * After a device fault (srv->faulted) /health, /ready and the POST routes answer 503
 * device_error until the process exits.
 *
 * With --api-key the POST routes answer 401 unless "Authorization: Bearer KEY" matches
 * (checked before the body is read); GET routes and OPTIONS stay open.
 *
 * Suspend/resume race: submit and MHD_suspend_connection happen under ctx->mu, and the
 * scheduler's done callback takes ctx->mu before MHD_resume_connection, so a job that
 * finishes at once is never resumed before it was suspended. After the resume MHD calls the
 * handler again, which queues the prepared response. ctx is freed in the
 * NOTIFY_COMPLETED callback, which also writes the access log line and the metrics.
 * `pending` counts submitted requests whose connection has not completed yet, so that
 * shutdown can wait for their responses to be written before MHD_stop_daemon.
 *
 * Access log: one line on stderr per request when its connection completes: RFC 3339 UTC
 * time, request id, client address, method, route (the metrics' route label: "preflight"
 * for OPTIONS, "other" for no route), path, status, error code ("-" when none; the code
 * of a streamed job's error event too), images, queue and total milliseconds; key=value
 * text, or one JSON object with --log-format json.
 *
 * Streaming ("stream": true): the event-stream response is queued right after the submit
 * and the connection is not suspended by the handler; the content reader suspends it when
 * no event is pending, and the job's progress (scheduler thread), preview and done (encode
 * pool) callbacks append an event and resume it (all under ctx->mu, with `suspended`
 * telling whether a resume is due). Such a
 * connection can complete while its job still runs (the client left during a write), so
 * ctx is refcounted (MHD + scheduler): NOTIFY_COMPLETED marks the job abandoned (the
 * scheduler then stops polling a possibly reused fd and cancels it) and drops one
 * reference, the done callback drops the other.
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/embed.h"
#include "server/conn_guard.h"
#include "server/metrics.h"
#include "server/scheduler.h"

DALLE_EMBED(openapi_yaml, "openapi.yaml");
DALLE_EMBED(index_html, "web/index.html");

struct dalle_http {
    dalle_server *srv;
    struct MHD_Daemon *daemon;
    dalle_conn_guard *guard;
    int listen_fd; /* after quiesce, closed after stop; -1 otherwise */
    atomic_int pending;
};

typedef struct {
    dalle_http *h;
    dalle_route route;
    char id[DALLE_REQUEST_ID_MAX + 1];
    char path[128]; /* printable copy for the log */
    char method[16];
    double t0;
    char *body;
    size_t len, cap;
    int too_large, oom;
    /* job and the suspend/resume hand-off */
    dalle_job job;
    pthread_mutex_t mu;
    int submitted, suspended, ready;
    struct MHD_Connection *conn;
    /* streaming: SSE bytes not yet handed to MHD; refs = 2 while MHD and the scheduler
     * both hold ctx (the connection may complete before the job when the client leaves) */
    char *ev;
    size_t ev_len, ev_off, ev_cap;
    int finished, ev_oom;
    atomic_int refs;
    /* for the access log */
    int status, images;
    char client[INET6_ADDRSTRLEN];
    char error[48]; /* the error code answered, "" for none */
    double queue_ms;
} request_ctx;

typedef struct {
    const char *path;
    dalle_route route;
    const char *method; /* the one method allowed besides OPTIONS */
} route_entry;

static const route_entry ROUTES[] = {
    {"/generate", DALLE_ROUTE_GENERATE, "POST"},
    {"/dalle", DALLE_ROUTE_DALLE, "POST"},
    {"/", DALLE_ROUTE_ROOT, "GET"},
    {"/health", DALLE_ROUTE_HEALTH, "GET"},
    {"/ready", DALLE_ROUTE_READY, "GET"},
    {"/info", DALLE_ROUTE_INFO, "GET"},
    {"/metrics", DALLE_ROUTE_METRICS, "GET"},
    {"/openapi.yaml", DALLE_ROUTE_OPENAPI, "GET"},
    {"/v1/images/generations", DALLE_ROUTE_V1_IMAGES, "POST"},
    {"/v1/models", DALLE_ROUTE_V1_MODELS, "GET"},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

static const route_entry *find_route(const char *url) {
    for (size_t i = 0; i < N_ROUTES; i++)
        if (!strcmp(ROUTES[i].path, url))
            return &ROUTES[i];
    return NULL;
}

/* ---- responses -------------------------------------------------------------------- */

typedef struct {
    const char *retry_after; /* NULL for none */
    const char *allow;
    const char *www_authenticate;
} extra_headers;

static int add_header(struct MHD_Response *r, const char *k, const char *v) {
    return MHD_add_response_header(r, k, v) == MHD_YES;
}

/* Add CORS, request id, content type and x to r, queue it and drop our reference. */
static enum MHD_Result queue_response(struct MHD_Connection *c, request_ctx *ctx, int status,
                                      const char *type, struct MHD_Response *r,
                                      const extra_headers *x) {
    int ok =
        add_header(r, "Access-Control-Allow-Origin", "*") &&
        add_header(r, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After") &&
        add_header(r, "X-Request-Id", ctx->id) &&
        (!type || add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type)) &&
        (!x || !x->retry_after || add_header(r, MHD_HTTP_HEADER_RETRY_AFTER, x->retry_after)) &&
        (!x || !x->allow || add_header(r, MHD_HTTP_HEADER_ALLOW, x->allow)) &&
        (!x || !x->www_authenticate ||
         add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, x->www_authenticate));
    if (ok && status == MHD_HTTP_NO_CONTENT) {
        const char *req_h =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        ok = add_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS") &&
             add_header(r, "Access-Control-Allow-Headers",
                        req_h ? req_h : "Content-Type, Authorization, X-Request-Id") &&
             add_header(r, "Access-Control-Max-Age", "86400");
    }
    enum MHD_Result res = ok ? MHD_queue_response(c, (unsigned)status, r) : MHD_NO;
    MHD_destroy_response(r);
    if (res == MHD_YES)
        ctx->status = status;
    return res;
}

/* Queue body (freed here when must_free). */
static enum MHD_Result send_body(struct MHD_Connection *c, request_ctx *ctx, int status,
                                 const char *type, char *body, size_t len, int must_free,
                                 const extra_headers *x) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    return queue_response(c, ctx, status, type, r, x);
}

static enum MHD_Result send_json(struct MHD_Connection *c, request_ctx *ctx, int status, char *body,
                                 size_t len, const extra_headers *x) {
    if (!body)
        return MHD_NO;
    return send_body(c, ctx, status, "application/json", body, len, 1, x);
}

static enum MHD_Result send_error(struct MHD_Connection *c, request_ctx *ctx,
                                  const dalle_http_error *e, const extra_headers *x) {
    snprintf(ctx->error, sizeof ctx->error, "%s", e->code);
    size_t len = 0;
    char *body = dalle_error_body(e, &len);
    return send_json(c, ctx, e->status, body, len, x);
}

static enum MHD_Result send_jansson(struct MHD_Connection *c, request_ctx *ctx, int status,
                                    json_t *v, const extra_headers *x) {
    if (!v)
        return MHD_NO;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return send_json(c, ctx, status, s, s ? strlen(s) : 0, x);
}

/* 503 while the model loads, after a device fault, or while the server drains. */
static enum MHD_Result send_unavailable(struct MHD_Connection *c, request_ctx *ctx) {
    dalle_http_error e;
    if (atomic_load(&ctx->h->srv->faulted))
        dalle_http_error_set(&e, 503, "device_error", NULL,
                             "a compute device failed; the server is restarting");
    else if (atomic_load(&ctx->h->srv->draining))
        dalle_http_error_set(&e, 503, "shutting_down", NULL, "the server is shutting down");
    else
        dalle_http_error_set(&e, 503, "loading", NULL, "the model is loading");
    return send_error(c, ctx, &e, &(extra_headers){.retry_after = "1"});
}

/* ---- GET routes ------------------------------------------------------------------- */

/* The devices, each with its scheduler's load once they run. */
static json_t *devices_json(const dalle_server *srv) {
    const int loaded = atomic_load(&srv->n_sched);
    json_t *a = json_array();
    for (int i = 0; a && i < srv->n_devices; i++) {
        const dalle_device *d = &srv->devices[i];
        int queued = 0, capacity = 0, in_flight = 0, images = 0;
        if (loaded)
            dalle_scheduler_stats(srv->sched[i], &queued, &capacity, &in_flight, &images);
        if (json_array_append_new(a, json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", d->name,
                                               "backend", d->backend, "queued", queued, "in_flight",
                                               in_flight, "batch_images", images))) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* The model's own example prompts; NULL when out of memory. */
static json_t *examples_json(const dalle_model_info *info) {
    json_t *a = json_array();
    for (int i = 0; a && i < info->n_examples; i++)
        if (json_array_append_new(a, json_string(info->examples[i]))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static json_t *info_json(const dalle_server *srv) {
    const dalle_server_config *cfg = &srv->cfg;
    json_t *model = json_null();
    if (atomic_load(&srv->n_sched))
        model = json_pack("{s:s, s:s, s:i, s:i, s:b, s:s, s:o}", "name", srv->info.name, "backend",
                          srv->info.backend, "image_size", srv->info.image_size, "image_length",
                          srv->info.image_length, "rank", srv->info.has_clip, "description",
                          srv->info.description, "examples", examples_json(&srv->info));
    return json_pack("{s:o, s:s, s:o, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:i, s:I}, s:s}", "model",
                     model, "device", cfg->device, "devices", devices_json(srv), "api_key_required",
                     cfg->api_key != NULL, "limits", "max_images", (json_int_t)cfg->max_images,
                     "max_prompt_bytes", (json_int_t)cfg->max_prompt, "body_limit_bytes",
                     (json_int_t)cfg->body_limit, "queue_capacity", (json_int_t)cfg->queue,
                     "deadline_s", (json_int_t)cfg->deadline, "preview_min_every",
                     DALLE_PREVIEW_MIN_EVERY, "jpeg_threads", (json_int_t)cfg->jpeg_threads,
                     "version", DALLE_SERVER_VERSION);
}

static enum MHD_Result serve_get(struct MHD_Connection *c, request_ctx *ctx) {
    dalle_server *srv = ctx->h->srv;
    switch (ctx->route) {
    case DALLE_ROUTE_ROOT: { /* the web page for browsers, the playground's health check else */
        const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
        if (accept && strstr(accept, "text/html"))
            return send_body(c, ctx, 200, "text/html; charset=utf-8", (char *)index_html,
                             (size_t)(index_html_end - index_html), 0, NULL);
        return send_jansson(c, ctx, 200, json_pack("{s:b}", "success", 1), NULL);
    }
    case DALLE_ROUTE_HEALTH:
        if (atomic_load(&srv->faulted))
            return send_unavailable(c, ctx);
        return send_jansson(c, ctx, 200, json_pack("{s:s}", "status", "ok"), NULL);
    case DALLE_ROUTE_READY:
        if (!atomic_load(&srv->ready))
            return send_unavailable(c, ctx);
        return send_jansson(c, ctx, 200, json_pack("{s:s}", "status", "ready"), NULL);
    case DALLE_ROUTE_INFO: return send_jansson(c, ctx, 200, info_json(srv), NULL);
    case DALLE_ROUTE_V1_MODELS:
        return send_jansson(c, ctx, 200,
                            json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "object", "list", "data",
                                      "id", atomic_load(&srv->n_sched) ? srv->info.name : "loading",
                                      "object", "model", "created", 0, "owned_by", "dalle-server"),
                            NULL);
    case DALLE_ROUTE_OPENAPI:
        return send_body(c, ctx, 200, "application/yaml", (char *)openapi_yaml,
                         (size_t)(openapi_yaml_end - openapi_yaml), 0, NULL);
    case DALLE_ROUTE_METRICS: {
        dalle_gauges g = {.queue_capacity = (int)srv->cfg.queue * srv->n_devices};
        for (int i = 0, n = atomic_load(&srv->n_sched); i < n; i++) {
            int q, cap, fl, im;
            dalle_scheduler_stats(srv->sched[i], &q, &cap, &fl, &im);
            g.queue_size += q, g.in_flight += fl, g.batch_images += im;
        }
        size_t len = 0;
        char *text = dalle_metrics_render(srv->metrics, &g, &len);
        if (!text)
            return MHD_NO;
        return send_body(c, ctx, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, 1,
                         NULL);
    }
    default: return MHD_NO;
    }
}

/* ---- POST /generate ----------------------------------------------------------------- */

typedef struct {
    int content_length, transfer_encoding;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    (void)kind, (void)value;
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        f->content_length++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        f->transfer_encoding++;
    return MHD_YES;
}

/* Framing header checks of any request: 0, or -1 with e. */
static int check_framing(struct MHD_Connection *c, const dalle_server *srv, dalle_http_error *e) {
    framing f = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1 || f.transfer_encoding > 1 ||
        (f.content_length && f.transfer_encoding))
        return dalle_http_error_set(e, 400, "bad_framing", NULL,
                                    "conflicting Content-Length / Transfer-Encoding headers");
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked"))
        return dalle_http_error_set(e, 501, "unsupported_transfer_encoding", NULL,
                                    "Transfer-Encoding must be chunked or absent");
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)srv->cfg.body_limit)
        return dalle_http_error_set(e, 413, "body_too_large", NULL,
                                    "the body is larger than %ld bytes", srv->cfg.body_limit);
    return 0;
}

static void append_body(request_ctx *ctx, const char *data, size_t n) {
    const size_t limit = (size_t)ctx->h->srv->cfg.body_limit;
    if (ctx->too_large || ctx->oom)
        return;
    if (n > limit - ctx->len) {
        ctx->too_large = 1;
        return;
    }
    if (ctx->len + n > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 1024;
        while (cap < ctx->len + n)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        char *p = realloc(ctx->body, cap);
        if (!p) {
            ctx->oom = 1;
            return;
        }
        ctx->body = p, ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
}

/* The scheduler finished ctx->job: resume the connection (encode pool thread). */
static void job_done(dalle_job *job) {
    request_ctx *ctx = job->user;
    pthread_mutex_lock(&ctx->mu);
    ctx->ready = 1;
    if (ctx->suspended)
        MHD_resume_connection(ctx->conn);
    pthread_mutex_unlock(&ctx->mu);
}

/* The access log's queue time and error code of a finished job (ctx->mu held or the
 * connection resumed: the scheduler and the pool are done with it). */
static void note_job(request_ctx *ctx, const dalle_job *job) {
    const double admitted = job->t_admit > 0 ? job->t_admit : dalle_server_now_ms();
    ctx->queue_ms = admitted - job->t_submit;
    ctx->images = job->status == 200 ? job->images : 0;
    if (job->status == 200 || !job->body)
        return;
    json_t *root = json_loadb(job->body, job->body_len, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(root, "error"), "code"));
    snprintf(ctx->error, sizeof ctx->error, "%s", code ? code : "");
    json_decref(root);
}

static enum MHD_Result send_job_result(struct MHD_Connection *c, request_ctx *ctx) {
    dalle_job *job = &ctx->job;
    char retry[16];
    snprintf(retry, sizeof retry, "%d", job->retry_after);
    extra_headers x = {.retry_after = job->retry_after ? retry : NULL};
    note_job(ctx, job);
    char *body = job->body;
    job->body = NULL;
    return send_json(c, ctx, job->status, body, job->body_len, &x);
}

/* ---- streaming (text/event-stream) ------------------------------------------------------
 * The response is queued at once with a content reader. The reader hands over the pending
 * event bytes; with none pending it suspends the connection (under ctx->mu), and the
 * scheduler's progress/done callbacks append an event and resume it. */

static void ctx_free(request_ctx *ctx) {
    dalle_request_free(&ctx->job.req);
    dalle_text_free(&ctx->job.text);
    free(ctx->job.body);
    free(ctx->body);
    free(ctx->ev);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx);
}

static void ctx_unref(request_ctx *ctx) {
    if (atomic_fetch_sub(&ctx->refs, 1) == 1)
        ctx_free(ctx);
}

/* Append "event: name\ndata: data\n\n" (ctx->mu held) and wake the reader. */
static void push_event(request_ctx *ctx, const char *name, const char *data, size_t len) {
    const size_t need = ctx->ev_len + len + strlen(name) + 16;
    if (need > ctx->ev_cap) {
        char *p = realloc(ctx->ev, need * 2);
        if (!p) {
            ctx->ev_oom = 1;
            return;
        }
        ctx->ev = p, ctx->ev_cap = need * 2;
    }
    ctx->ev_len += (size_t)sprintf(ctx->ev + ctx->ev_len, "event: %s\ndata: ", name);
    memcpy(ctx->ev + ctx->ev_len, data, len);
    ctx->ev_len += len;
    memcpy(ctx->ev + ctx->ev_len, "\n\n", 2);
    ctx->ev_len += 2;
    if (ctx->suspended) {
        ctx->suspended = 0;
        MHD_resume_connection(ctx->conn);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    request_ctx *ctx = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&ctx->mu);
    if (ctx->ev_oom) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (ctx->ev_off < ctx->ev_len) {
        const size_t k = ctx->ev_len - ctx->ev_off < max ? ctx->ev_len - ctx->ev_off : max;
        memcpy(buf, ctx->ev + ctx->ev_off, k);
        ctx->ev_off += k;
        if (ctx->ev_off == ctx->ev_len)
            ctx->ev_off = ctx->ev_len = 0;
        n = (ssize_t)k;
    } else if (ctx->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        ctx->suspended = 1;
        MHD_suspend_connection(ctx->conn);
    }
    pthread_mutex_unlock(&ctx->mu);
    return n;
}

static void stream_progress(dalle_job *job, int step, int steps) {
    request_ctx *ctx = job->user;
    char data[64];
    const int n = snprintf(data, sizeof data, "{\"step\":%d,\"steps\":%d}", step, steps);
    pthread_mutex_lock(&ctx->mu);
    push_event(ctx, "progress", data, (size_t)n);
    pthread_mutex_unlock(&ctx->mu);
}

static void stream_preview(dalle_job *job, const char *json, size_t len) {
    request_ctx *ctx = job->user;
    pthread_mutex_lock(&ctx->mu);
    push_event(ctx, "preview", json, len);
    pthread_mutex_unlock(&ctx->mu);
}

static void stream_done(dalle_job *job) {
    request_ctx *ctx = job->user;
    pthread_mutex_lock(&ctx->mu);
    if (!job->body)
        ctx->ev_oom = 1;
    else
        push_event(ctx, job->status == 200 ? "result" : "error", job->body, job->body_len);
    note_job(ctx, job);
    ctx->finished = 1;
    if (ctx->suspended) { /* push_event did not run */
        ctx->suspended = 0;
        MHD_resume_connection(ctx->conn);
    }
    pthread_mutex_unlock(&ctx->mu);
    ctx_unref(ctx);
}

/* The first event of a submitted job's stream (ctx->mu held since the submit, so that it
 * comes before any event of the job). */
static void push_queued(request_ctx *ctx, int position) {
    char data[64];
    const int n = snprintf(data, sizeof data, "{\"position\":%d}", position);
    push_event(ctx, "queued", data, (size_t)n);
}

/* Queue the event-stream response of a submitted job. */
static enum MHD_Result start_stream(struct MHD_Connection *c, request_ctx *ctx) {
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, ctx, NULL);
    if (!r)
        return MHD_NO;
    if (!add_header(r, "Cache-Control", "no-cache")) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    return queue_response(c, ctx, 200, "text/event-stream", r, NULL);
}

static enum MHD_Result submit(struct MHD_Connection *c, request_ctx *ctx) {
    dalle_server *srv = ctx->h->srv;
    if (!atomic_load(&srv->n_sched) || !atomic_load(&srv->ready))
        return send_unavailable(c, ctx);
    dalle_http_error e;
    dalle_job *job = &ctx->job;
    const int openai = ctx->route == DALLE_ROUTE_V1_IMAGES;
    if (dalle_request_parse(srv, openai, ctx->body ? ctx->body : "", ctx->len, &job->req, &e)) {
        dalle_metrics_failure(srv->metrics, DALLE_FAIL_VALIDATION);
        return send_error(c, ctx, &e, NULL);
    }
    dalle_error err = {0};
    const double t0 = dalle_server_now_ms();
    dalle_status st =
        dalle_text_encode(srv->model, job->req.prompt, job->req.prompt_len, &job->text, &err);
    if (st != DALLE_OK) {
        dalle_metrics_failure(srv->metrics, DALLE_FAIL_VALIDATION);
        if (st == DALLE_ERR_INVALID_ARG)
            dalle_http_error_set(&e, openai ? 400 : 422, "invalid_prompt", "prompt", "%s", err.msg);
        else
            dalle_http_error_set(&e, 500, "generation", NULL, "%s", err.msg);
        return send_error(c, ctx, &e, NULL);
    }
    job->t_submit = dalle_server_now_ms();
    job->text_ms = job->t_submit - t0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    job->fd = ci ? ci->connect_fd : -1;
    memcpy(job->id, ctx->id, sizeof job->id);
    const int stream = job->req.stream;
    job->done = stream ? stream_done : job_done;
    job->progress = stream ? stream_progress : NULL;
    job->preview = stream ? stream_preview : NULL;
    job->user = ctx;
    atomic_store(&ctx->refs, stream ? 2 : 1);
    pthread_mutex_lock(&ctx->mu);
    int position = 0;
    dalle_submit_result r = dalle_scheduler_dispatch(srv, job, &position);
    if (r == DALLE_SUBMIT_OK) {
        ctx->submitted = 1;
        atomic_fetch_add(&ctx->h->pending, 1);
        if (stream) {
            push_queued(ctx, position);
        } else {
            ctx->suspended = 1;
            MHD_suspend_connection(c);
        }
    }
    pthread_mutex_unlock(&ctx->mu);
    if (r == DALLE_SUBMIT_OK && stream)
        return start_stream(c, ctx);
    if (r == DALLE_SUBMIT_OK)
        return MHD_YES;
    atomic_store(&ctx->refs, 1);
    if (r == DALLE_SUBMIT_CLOSED)
        return send_unavailable(c, ctx);
    dalle_metrics_failure(srv->metrics, DALLE_FAIL_OVERLOADED);
    dalle_http_error_set(&e, 429, "overloaded", NULL,
                         "the queue is full (%ld requests); retry later", srv->cfg.queue);
    return send_error(c, ctx, &e, &(extra_headers){.retry_after = "2"});
}

static enum MHD_Result serve_post(struct MHD_Connection *c, request_ctx *ctx,
                                  const char *upload_data, size_t *upload_size) {
    dalle_http_error e;
    if (*upload_size) {
        append_body(ctx, upload_data, *upload_size);
        *upload_size = 0;
        if (!ctx->too_large)
            return MHD_YES;
        /* mid-body MHD 0.9.75 cannot queue a response: write it to the socket and close */
        dalle_http_error_set(&e, 413, "body_too_large", NULL, "the body is larger than %ld bytes",
                             ctx->h->srv->cfg.body_limit);
        size_t len = 0;
        char *body = dalle_error_body(&e, &len);
        if (body)
            dalle_conn_guard_reject(c, 413, ctx->id, body, len);
        free(body);
        ctx->status = 413;
        snprintf(ctx->error, sizeof ctx->error, "%s", e.code);
        return MHD_NO;
    }
    pthread_mutex_lock(&ctx->mu);
    const int submitted = ctx->submitted, ready = ctx->ready;
    if (ready)
        ctx->suspended = 0;
    pthread_mutex_unlock(&ctx->mu);
    if (ready)
        return send_job_result(c, ctx);
    if (submitted)
        return MHD_YES; /* not expected: MHD calls again only after the resume */
    if (ctx->oom) {
        dalle_http_error_set(&e, 500, "out_of_memory", NULL, "out of memory");
        return send_error(c, ctx, &e, NULL);
    }
    return submit(c, ctx);
}

/* ---- dispatch ----------------------------------------------------------------------- */

static void copy_printable(char *dst, size_t n, const char *src) {
    size_t i = 0;
    for (; src && src[i] && i + 1 < n; i++)
        dst[i] = (src[i] > 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = 0;
}

static void request_id(struct MHD_Connection *c, char *id) {
    const char *given = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;
    int ok = n > 0 && n <= DALLE_REQUEST_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (given[i] >= '0' && given[i] <= '9') || (given[i] >= 'a' && given[i] <= 'z') ||
             (given[i] >= 'A' && given[i] <= 'Z') || strchr("-_.:", given[i]);
    if (ok) {
        memcpy(id, given, n + 1);
        return;
    }
    static atomic_ulong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id, DALLE_REQUEST_ID_MAX + 1, "req-%lx-%lx", (unsigned long)ts.tv_sec,
             (unsigned long)atomic_fetch_add(&counter, 1));
}

static void client_address(struct MHD_Connection *c, char out[INET6_ADDRSTRLEN]) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    const void *a =
        !sa                         ? NULL
        : sa->sa_family == AF_INET  ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
        : sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                    : NULL;
    if (!a || !inet_ntop(sa->sa_family, a, out, INET6_ADDRSTRLEN))
        snprintf(out, INET6_ADDRSTRLEN, "-");
}

/* The API key check of the generation routes; constant time in the key's length. */
static int authorized(struct MHD_Connection *c, const dalle_server *srv) {
    const char *key = srv->cfg.api_key;
    if (!key)
        return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7))
        return 0;
    auth += 7;
    const size_t n = strlen(key);
    if (strlen(auth) != n)
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(auth[i] ^ key[i]);
    return diff == 0;
}

/* Checks of every request before routing: 0, or -1 with e. MHD runs with
 * MHD_OPTION_STRICT_FOR_CLIENT 0 so that these get JSON answers (strict mode answers a
 * missing Host itself, with an HTML page). */
static int check_request(struct MHD_Connection *c, request_ctx *ctx, const char *url,
                         const char *version, dalle_http_error *e) {
    if (!dalle_conn_guard_raw_uri_ok(c, url, version))
        return dalle_http_error_set(e, 400, "bad_path", NULL,
                                    "the path holds a NUL or another control byte");
    if (!strcmp(version, MHD_HTTP_VERSION_1_1) &&
        !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
        return dalle_http_error_set(e, 400, "missing_host", NULL,
                                    "an HTTP/1.1 request needs a Host header");
    return check_framing(c, ctx->h->srv, e);
}

static enum MHD_Result first_call(struct MHD_Connection *c, request_ctx *ctx, const char *url,
                                  const char *method, const char *version) {
    const route_entry *r = find_route(url);
    ctx->route = r ? r->route : DALLE_ROUTE_OTHER;
    dalle_http_error e;
    if (check_request(c, ctx, url, version, &e))
        return send_error(c, ctx, &e, NULL);
    if (!strcmp(method, "OPTIONS")) {
        ctx->route = DALLE_ROUTE_PREFLIGHT;
        return send_body(c, ctx, 204, NULL, "", 0, 0, NULL);
    }
    if (!r) {
        dalle_http_error_set(&e, 404, "not_found", NULL, "no route %s", ctx->path);
        return send_error(c, ctx, &e, NULL);
    }
    const int head_ok = !strcmp(method, "HEAD") && !strcmp(r->method, "GET");
    if (strcmp(method, r->method) && !head_ok) {
        char allow[32];
        snprintf(allow, sizeof allow, "%s, OPTIONS", r->method);
        dalle_http_error_set(&e, 405, "method_not_allowed", NULL, "%s allows %s", r->path, allow);
        return send_error(c, ctx, &e, &(extra_headers){.allow = allow});
    }
    if (strcmp(r->method, "POST"))
        return serve_get(c, ctx);
    if (!authorized(c, ctx->h->srv)) {
        dalle_http_error_set(&e, 401, "invalid_api_key", NULL,
                             "missing or wrong API key (Authorization: Bearer KEY)");
        return send_error(c, ctx, &e, &(extra_headers){.www_authenticate = "Bearer"});
    }
    return MHD_YES; /* the body follows */
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_size, void **req_cls) {
    request_ctx *ctx = *req_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        ctx->h = cls;
        ctx->conn = c;
        atomic_store(&ctx->refs, 1);
        ctx->t0 = dalle_server_now_ms();
        pthread_mutex_init(&ctx->mu, NULL);
        copy_printable(ctx->path, sizeof ctx->path, url);
        copy_printable(ctx->method, sizeof ctx->method, method);
        client_address(c, ctx->client);
        request_id(c, ctx->id);
        *req_cls = ctx;
        const enum MHD_Result res = first_call(c, ctx, url, method, version);
        if (ctx->status)
            dalle_conn_guard_received(c); /* answered: no receive deadline */
        return res;
    }
    if (ctx->status) { /* answered already: discard what MHD still hands over */
        *upload_size = 0;
        return MHD_YES;
    }
    if (!*upload_size)
        dalle_conn_guard_received(c); /* the body is complete */
    return serve_post(c, ctx, upload_data, upload_size);
}

/* One access log line (see the top of this file); a single fprintf, so lines of
 * concurrent requests do not interleave. */
static void log_access(const dalle_server *srv, const request_ctx *ctx, int status, double ms,
                       int closed_early) {
    const int images = ctx->images;
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    const size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
    const char *route = dalle_route_path(ctx->route);
    if (!srv->cfg.log_json) {
        fprintf(stderr,
                "%s access id=%s client=%s method=%s route=%s path=%s status=%d error=%s "
                "images=%d queue_ms=%.1f ms=%.1f%s\n",
                ts, ctx->id, ctx->client, ctx->method, route, ctx->path, status,
                ctx->error[0] ? ctx->error : "-", images, ctx->queue_ms, ms,
                closed_early ? " (connection closed early)" : "");
        return;
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:i, s:f, s:f, s:b}", "time", ts,
                  "msg", "access", "id", ctx->id, "client", ctx->client, "method", ctx->method,
                  "route", route, "path", ctx->path, "status", status, "error",
                  ctx->error[0] ? json_string(ctx->error) : json_null(), "images", images,
                  "queue_ms", ctx->queue_ms, "ms", ms, "closed_early", closed_early);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
}

static void completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe) {
    dalle_http *h = cls;
    request_ctx *ctx = *req_cls;
    const int guard_status = dalle_conn_guard_answered(c); /* a 408 of the reaper */
    dalle_conn_guard_completed(c); /* the next request's deadlines start now */
    if (!ctx)
        return;
    const int status = ctx->status ? ctx->status : guard_status ? guard_status : 499;
    const double ms = dalle_server_now_ms() - ctx->t0;
    pthread_mutex_lock(&ctx->mu); /* a stream's job may still write images, queue_ms, error */
    if (!ctx->finished)
        atomic_store(&ctx->job.abandoned, 1); /* a stream whose client left */
    if (!ctx->status && guard_status)
        snprintf(ctx->error, sizeof ctx->error, "request_timeout");
    log_access(h->srv, ctx, status, ms, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    pthread_mutex_unlock(&ctx->mu);
    dalle_metrics_request(h->srv->metrics, ctx->route, status, ms / 1e3);
    if (ctx->submitted)
        atomic_fetch_sub(&h->pending, 1);
    *req_cls = NULL;
    ctx_unref(ctx);
}

int dalle_http_start(dalle_http **out, dalle_server *srv, char *msg, size_t msg_size) {
    const dalle_server_config *cfg = &srv->cfg;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        snprintf(msg, msg_size, "--host: '%s' is not an IPv4 address", cfg->host);
        return -1;
    }
    dalle_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(msg, msg_size, "out of memory");
        return -1;
    }
    h->srv = srv;
    h->listen_fd = -1;
    h->guard = dalle_conn_guard_create(cfg->max_conns, cfg->timeout, cfg->receive_timeout);
    if (!h->guard) {
        snprintf(msg, msg_size, "out of memory");
        free(h);
        return -1;
    }
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                           MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* the guard refuses connections over --max-conns itself (MHD's limit is higher: at its
     * own limit MHD stops accepting and new clients wait in the backlog) */
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, dalle_conn_guard_accept, h->guard, handle, h,
        MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout, MHD_OPTION_CONNECTION_LIMIT,
        dalle_conn_guard_mhd_limit(h->guard), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->per_ip_conns, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, dalle_conn_guard_notify, h->guard,
        MHD_OPTION_URI_LOG_CALLBACK, dalle_conn_guard_uri, h->guard, MHD_OPTION_STRICT_FOR_CLIENT,
        0, MHD_OPTION_THREAD_STACK_SIZE, (size_t)1 << 20, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(msg, msg_size, "cannot listen on %s:%ld (address in use or not allowed?)",
                 cfg->host, cfg->port);
        dalle_conn_guard_destroy(h->guard);
        free(h);
        return -1;
    }
    *out = h;
    return 0;
}

int dalle_http_port(const dalle_http *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void dalle_http_quiesce(dalle_http *h) {
    h->listen_fd = MHD_quiesce_daemon(h->daemon);
    if (h->listen_fd >= 0)
        shutdown(h->listen_fd, SHUT_RDWR);
}

void dalle_http_stop(dalle_http *h, double wait_s) {
    const double until = dalle_server_now_ms() + wait_s * 1e3;
    while (atomic_load(&h->pending) > 0 && dalle_server_now_ms() < until)
        usleep(10000);
    MHD_stop_daemon(h->daemon);
    dalle_conn_guard_destroy(h->guard);
    if (h->listen_fd >= 0)
        close(h->listen_fd);
    free(h);
}
