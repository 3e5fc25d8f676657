/* metrics.h — Prometheus counters, gauges and histograms of dalle-server.
 *
 * Contract: every recording function is lock-free (atomics) and callable from any thread;
 * dalle_metrics_render writes the text exposition format (version 0.0.4), with the standard
 * process_* metrics of the process (read from /proc/self at render time).
 */
#ifndef DALLE_SERVER_METRICS_H
#define DALLE_SERVER_METRICS_H

#include <stddef.h>

typedef enum {
    DALLE_ROUTE_GENERATE,
    DALLE_ROUTE_DALLE,
    DALLE_ROUTE_ROOT,
    DALLE_ROUTE_HEALTH,
    DALLE_ROUTE_READY,
    DALLE_ROUTE_INFO,
    DALLE_ROUTE_METRICS,
    DALLE_ROUTE_OPENAPI,
    DALLE_ROUTE_V1_IMAGES,
    DALLE_ROUTE_V1_MODELS,
    DALLE_ROUTE_PREFLIGHT, /* OPTIONS (CORS preflight) on any path */
    DALLE_ROUTE_OTHER,     /* no such route (404) */
    DALLE_ROUTE_COUNT
} dalle_route;

typedef enum {
    DALLE_FAIL_OVERLOADED,
    DALLE_FAIL_VALIDATION,
    DALLE_FAIL_GENERATION,
    DALLE_FAIL_TIMEOUT,
    DALLE_FAIL_CANCELLED,
    DALLE_FAIL_SHUTDOWN,
    DALLE_FAIL_DEVICE, /* failed by a fatal device fault */
    DALLE_FAIL_COUNT
} dalle_failure;

typedef enum {
    DALLE_STAGE_TEXT,
    DALLE_STAGE_DECODE,
    DALLE_STAGE_VQGAN,
    DALLE_STAGE_CLIP,
    DALLE_STAGE_JPEG,
    DALLE_STAGE_COUNT
} dalle_stage;

typedef struct dalle_metrics dalle_metrics;

/* The route's path as the access log and the metrics' route label name it. */
const char *dalle_route_path(dalle_route r);

dalle_metrics *dalle_metrics_new(void);
void dalle_metrics_free(dalle_metrics *m);

void dalle_metrics_request(dalle_metrics *m, dalle_route r, int status, double seconds);
void dalle_metrics_failure(dalle_metrics *m, dalle_failure f);
void dalle_metrics_stage(dalle_metrics *m, dalle_stage s, double seconds);
void dalle_metrics_batch(dalle_metrics *m, int images); /* one decode step of `images` */
void dalle_metrics_generated(dalle_metrics *m, int images, int image_tokens, double queue_seconds);

/* Gauges are read from the caller at render time. malloc'ed text, or NULL. */
typedef struct {
    int queue_size, queue_capacity, in_flight, batch_images;
} dalle_gauges;

char *dalle_metrics_render(dalle_metrics *m, const dalle_gauges *g, size_t *len);

#endif /* DALLE_SERVER_METRICS_H */
