/* server.h — the parts of dalle-server and the state they share.
 *
 * Contract: main.c fills a dalle_server (settings, the encode pool, then per device a model
 * and a scheduler) and starts the HTTP front end (http.c) before loading, so /health and
 * /ready answer while the models load. `n_sched` turns from 0 to the number of schedulers
 * once all run (models[] and sched[] are complete before; `model` and `info` are device
 * 0's, used for text encoding and limits); `ready` is 1 from then until draining starts or
 * a device fails (`faulted`: /health 503 too). Handlers read these with atomic loads.
 */
#ifndef DALLE_SERVER_SERVER_H
#define DALLE_SERVER_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/version.h"
#include "config/server_config.h"
#include "dalle.h"

#define DALLE_SERVER_VERSION DALLE_VERSION
#define DALLE_REQUEST_ID_MAX 64

typedef struct dalle_scheduler dalle_scheduler;
typedef struct dalle_metrics dalle_metrics;
typedef struct dalle_encode_pool dalle_encode_pool;

/* A compute device the server drives: "cpu" or "cuda:I". */
typedef struct {
    char name[24];
    const char *backend; /* "cpu" or "cuda" */
    int ordinal;
} dalle_device;

typedef struct {
    dalle_server_config cfg;
    dalle_device devices[DALLE_SERVER_MAX_DEVICES]; /* resolved from cfg.device */
    int n_devices;
    dalle_model *models[DALLE_SERVER_MAX_DEVICES]; /* one per device */
    dalle_scheduler *sched[DALLE_SERVER_MAX_DEVICES];
    atomic_int n_sched;      /* 0 until every scheduler runs */
    dalle_model *model;      /* models[0] once n_sched > 0 */
    dalle_model_info info;   /* of models[0] */
    dalle_encode_pool *pool; /* JPEG + base64, finished jobs */
    dalle_metrics *metrics;
    atomic_int ready;    /* loaded, not draining, no device fault */
    atomic_int draining; /* SIGTERM/SIGINT seen */
    atomic_int faulted;  /* a device reported a fatal fault: unhealthy, exiting */
} dalle_server;

/* ---- a validated generation request (request.c) ---------------------------------- */

typedef enum { DALLE_DIALECT_NATIVE, DALLE_DIALECT_PLAYGROUND, DALLE_DIALECT_OPENAI } dalle_dialect;

typedef struct {
    dalle_dialect dialect;
    char *prompt; /* NUL-terminated UTF-8, owned */
    size_t prompt_len;
    dalle_gen_params gen; /* n_images, seed and sampling, range-checked */
    int rank;
    int quality;
    int subsampling;   /* JPEG chroma: 444, 422 or 420 */
    int stream;        /* answer as text/event-stream: queued, progress…, result | error */
    int preview_every; /* stream a preview event every k decode steps; 0 = none */
} dalle_request;

/* Previews: every k ≥ DALLE_PREVIEW_MIN_EVERY steps (so at most image_length / 16 − 1 per
 * request), JPEG quality at most DALLE_PREVIEW_MAX_QUALITY. */
#define DALLE_PREVIEW_MIN_EVERY   16
#define DALLE_PREVIEW_MAX_QUALITY 75

/* The OpenAI route's n: OpenAI's own limit, and at most --max-images. */
#define DALLE_OPENAI_MAX_N 10

/* An HTTP error: status, machine code, message, the offending field or NULL. */
typedef struct {
    int status;
    const char *code;
    char message[256];
    char param[64]; /* "" for none */
} dalle_http_error;

/* Parse and validate a POST body: openai = 1 for /v1/images/generations, else the
 * /generate dialects. 0, or -1 with e filled. */
int dalle_request_parse(const dalle_server *srv, int openai, const char *body, size_t len,
                        dalle_request *req, dalle_http_error *e);
void dalle_request_free(dalle_request *req);

/* A JSON error body {"error": {"code", "message", "param", "type"}}; malloc'ed, or NULL. */
char *dalle_error_body(const dalle_http_error *e, size_t *len);

/* Fill e; returns -1 so that parsers can `return dalle_http_error_set(...)`. */
int dalle_http_error_set(dalle_http_error *e, int status, const char *code, const char *param,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- the response of a finished generation (response.c) ---------------------------- */

/* Encode a result as the request's dialect; malloc'ed JSON, or NULL when out of memory. */
char *dalle_response_body(const dalle_server *srv, const dalle_request *req, const char *id,
                          const dalle_result *r, double queue_ms, size_t *len);

/* A preview event's data {"step", "steps", "images": [base64 JPEG, by index]}; malloc'ed
 * JSON, or NULL when out of memory. */
char *dalle_preview_body(const dalle_result *r, int step, int steps, size_t *len);

#endif /* DALLE_SERVER_SERVER_H */
