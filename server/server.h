/* server.h — the parts of dalle-server and the state they share.
 *
 * Contract: main.c fills a dalle_server (settings, then the model once it is loaded, then
 * the scheduler) and starts the HTTP front end (http.c) before loading, so /health and
 * /ready answer while the model loads. `ready` is 1 once the scheduler runs and 0 again
 * when draining starts; handlers read it (and `sched`) with atomic loads.
 */
#ifndef DALLE_SERVER_SERVER_H
#define DALLE_SERVER_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config/server_config.h"
#include "dalle.h"

#define DALLE_SERVER_VERSION "0.1.0"
#define DALLE_REQUEST_ID_MAX 64

typedef struct dalle_scheduler dalle_scheduler;
typedef struct dalle_metrics dalle_metrics;

typedef struct {
    dalle_server_config cfg;
    dalle_model *model;              /* NULL until loaded */
    dalle_model_info info;           /* valid once model is set */
    _Atomic(dalle_scheduler *) sched; /* NULL until loaded */
    dalle_metrics *metrics;
    atomic_int ready;    /* model loaded and not draining */
    atomic_int draining; /* SIGTERM/SIGINT seen */
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
    int stream; /* answer as text/event-stream: queued, progress…, result | error */
} dalle_request;

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

#endif /* DALLE_SERVER_SERVER_H */
