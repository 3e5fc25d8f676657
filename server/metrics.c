/* metrics.c — the counters behind GET /metrics (metrics.h).
 *
 * Contract: requests are counted by route and status (statuses 100..599), durations go
 * into fixed buckets in seconds (0.005 … 300), per route, every value is an atomic updated
 * with relaxed ordering: a scrape sees each value whole, not a snapshot of all of them.
 * The process_* metrics (CPU seconds, resident and virtual memory, open and maximum file
 * descriptors, start time) are the ones Prometheus' client libraries export, read from
 * /proc/self/stat, /proc/self/fd and /proc/stat; one that cannot be read is left out.
 */
#include "server/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/sbuf.h"
#include "server/server.h"

/* Bucket bounds: seconds for durations, images for the batch size (13 each). */
#define N_BUCKETS 13
static const double SECONDS[N_BUCKETS] = {0.005, 0.025, 0.1, 0.25, 0.5, 1,  2.5,
                                          5,     10,    30,  60,   120, 300};
static const double IMAGES[N_BUCKETS] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256};

typedef struct {
    const double *bounds;
    atomic_ulong count[N_BUCKETS + 1]; /* last: +Inf */
    _Atomic double sum;
} histogram;

struct dalle_metrics {
    atomic_ulong requests[DALLE_ROUTE_COUNT][600];
    atomic_ulong failures[DALLE_FAIL_COUNT];
    atomic_ulong images, image_tokens;
    histogram request_seconds[DALLE_ROUTE_COUNT], queue_seconds, batch_size,
        stage_seconds[DALLE_STAGE_COUNT];
    double start_time; /* Unix seconds; 0 when /proc does not say */
};

static const char *const ROUTE_PATH[DALLE_ROUTE_COUNT] = {
    "/generate",  "/dalle",        "/",
    "/health",    "/ready",        "/info",
    "/metrics",   "/openapi.yaml", "/v1/images/generations",
    "/v1/models", "preflight",     "other",
};
static const char *const STAGE_NAME[DALLE_STAGE_COUNT] = {
    "text_encode", "decode", "vqgan", "clip", "jpeg",
};
static const char *const FAILURE_NAME[DALLE_FAIL_COUNT] = {
    "overloaded", "validation", "generation", "timeout", "cancelled", "shutdown", "device",
};

/* The fields of /proc/self/stat after the command name: [0] is field 3 (state), so field k
 * of proc(5) is f[k - 3]. 0, or -1 when it cannot be read. */
#define STAT_FIELDS 22
static int self_stat(unsigned long long f[STAT_FIELDS]) {
    char buf[1024];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (!fp)
        return -1;
    const size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    if (!p || p[1] != ' ')
        return -1;
    p += 4; /* ") S " */
    for (int i = 1; i < STAT_FIELDS; i++) {
        char *end;
        f[i] = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
    }
    return 0;
}

/* Boot time (btime of /proc/stat) + the process' start in clock ticks (field 22). */
static double process_start_time(void) {
    unsigned long long f[STAT_FIELDS], btime = 0;
    char line[256];
    FILE *fp = fopen("/proc/stat", "r");
    if (!fp)
        return 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    fclose(fp);
    const long hz = sysconf(_SC_CLK_TCK);
    if (!btime || hz <= 0 || self_stat(f))
        return 0;
    return (double)btime + (double)f[22 - 3] / (double)hz;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

const char *dalle_route_path(dalle_route r) {
    return ROUTE_PATH[r];
}

dalle_metrics *dalle_metrics_new(void) {
    dalle_metrics *m = calloc(1, sizeof(dalle_metrics));
    if (!m)
        return NULL;
    for (int r = 0; r < DALLE_ROUTE_COUNT; r++)
        m->request_seconds[r].bounds = SECONDS;
    m->queue_seconds.bounds = SECONDS;
    m->batch_size.bounds = IMAGES;
    m->start_time = process_start_time();
    for (int s = 0; s < DALLE_STAGE_COUNT; s++)
        m->stage_seconds[s].bounds = SECONDS;
    return m;
}

void dalle_metrics_free(dalle_metrics *m) {
    free(m);
}

static void observe(histogram *h, double x) {
    size_t b = 0;
    while (b < N_BUCKETS && x > h->bounds[b])
        b++;
    atomic_fetch_add_explicit(&h->count[b], 1, memory_order_relaxed);
    double old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + x, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void dalle_metrics_request(dalle_metrics *m, dalle_route r, int status, double seconds) {
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&m->requests[r][status], 1, memory_order_relaxed);
    observe(&m->request_seconds[r], seconds);
}

void dalle_metrics_failure(dalle_metrics *m, dalle_failure f) {
    atomic_fetch_add_explicit(&m->failures[f], 1, memory_order_relaxed);
}

void dalle_metrics_stage(dalle_metrics *m, dalle_stage s, double seconds) {
    observe(&m->stage_seconds[s], seconds);
}

void dalle_metrics_batch(dalle_metrics *m, int images) {
    observe(&m->batch_size, images);
}

void dalle_metrics_generated(dalle_metrics *m, int images, int image_tokens, double queue_seconds) {
    atomic_fetch_add_explicit(&m->images, (unsigned long)images, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->image_tokens, (unsigned long)image_tokens, memory_order_relaxed);
    observe(&m->queue_seconds, queue_seconds);
}

static void printf_sbuf(dalle_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_sbuf(dalle_sbuf *b, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        dalle_sbuf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* One histogram's lines; label: "" or "stage=\"decode\"" (then HELP/TYPE are not repeated). */
static void render_histogram(dalle_sbuf *b, const char *name, const char *help, const char *label,
                             histogram *h) {
    if (help)
        printf_sbuf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    const char *sep = *label ? "," : "";
    unsigned long cum = 0;
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->count[i], memory_order_relaxed);
        if (i < N_BUCKETS)
            printf_sbuf(b, "%s_bucket{%s%sle=\"%g\"} %lu\n", name, label, sep, h->bounds[i], cum);
        else
            printf_sbuf(b, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name, label, sep, cum);
    }
    const char *open = *label ? "{" : "", *close = *label ? "}" : "";
    printf_sbuf(b, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %lu\n", name, open, label, close,
                atomic_load(&h->sum), name, open, label, close, cum);
}

static void render_process(dalle_sbuf *b, const dalle_metrics *m) {
    unsigned long long f[STAT_FIELDS];
    const long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (!self_stat(f) && hz > 0 && page > 0) {
        printf_sbuf(b,
                    "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                    "seconds.\n# TYPE process_cpu_seconds_total counter\n"
                    "process_cpu_seconds_total %.2f\n",
                    (double)(f[14 - 3] + f[15 - 3]) / (double)hz);
        printf_sbuf(b,
                    "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                    "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes "
                    "%llu\n",
                    f[23 - 3]);
        printf_sbuf(b,
                    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                    "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "
                    "%llu\n",
                    f[24 - 3] * (unsigned long long)page);
    }
    const int fds = open_fds();
    if (fds >= 0)
        printf_sbuf(b,
                    "# HELP process_open_fds Number of open file descriptors.\n"
                    "# TYPE process_open_fds gauge\nprocess_open_fds %d\n",
                    fds);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
        printf_sbuf(b,
                    "# HELP process_max_fds Maximum number of open file descriptors.\n"
                    "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                    (unsigned long long)rl.rlim_cur);
    if (m->start_time > 0)
        printf_sbuf(b,
                    "# HELP process_start_time_seconds Start time of the process since unix "
                    "epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                    "process_start_time_seconds %.2f\n",
                    m->start_time);
}

char *dalle_metrics_render(dalle_metrics *m, const dalle_gauges *g, size_t *len) {
    dalle_sbuf b = {0};
    printf_sbuf(&b,
                "# HELP dalle_queue_size Requests waiting for the scheduler.\n"
                "# TYPE dalle_queue_size gauge\ndalle_queue_size %d\n",
                g->queue_size);
    printf_sbuf(&b,
                "# HELP dalle_queue_capacity Queue length limit.\n"
                "# TYPE dalle_queue_capacity gauge\ndalle_queue_capacity %d\n",
                g->queue_capacity);
    printf_sbuf(&b,
                "# HELP dalle_requests_in_flight Requests being generated.\n"
                "# TYPE dalle_requests_in_flight gauge\ndalle_requests_in_flight %d\n",
                g->in_flight);
    printf_sbuf(&b,
                "# HELP dalle_batch_images Images in the running decode batch.\n"
                "# TYPE dalle_batch_images gauge\ndalle_batch_images %d\n",
                g->batch_images);
    printf_sbuf(&b, "# HELP dalle_requests_total HTTP requests by route and status.\n"
                    "# TYPE dalle_requests_total counter\n");
    for (int r = 0; r < DALLE_ROUTE_COUNT; r++)
        for (int s = 100; s < 600; s++) {
            unsigned long v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
            if (v)
                printf_sbuf(&b, "dalle_requests_total{route=\"%s\",status=\"%d\"} %lu\n",
                            ROUTE_PATH[r], s, v);
        }
    printf_sbuf(&b, "# HELP dalle_request_failures_total Failed generation requests by kind.\n"
                    "# TYPE dalle_request_failures_total counter\n");
    for (int f = 0; f < DALLE_FAIL_COUNT; f++)
        printf_sbuf(&b, "dalle_request_failures_total{err=\"%s\"} %lu\n", FAILURE_NAME[f],
                    atomic_load_explicit(&m->failures[f], memory_order_relaxed));
    printf_sbuf(&b,
                "# HELP dalle_images_generated_total Images returned.\n"
                "# TYPE dalle_images_generated_total counter\n"
                "dalle_images_generated_total %lu\n",
                atomic_load(&m->images));
    printf_sbuf(&b,
                "# HELP dalle_image_tokens_total Image codes decoded for returned images.\n"
                "# TYPE dalle_image_tokens_total counter\ndalle_image_tokens_total %lu\n",
                atomic_load(&m->image_tokens));
    for (int r = 0; r < DALLE_ROUTE_COUNT; r++) {
        char label[64];
        snprintf(label, sizeof label, "route=\"%s\"", ROUTE_PATH[r]);
        render_histogram(&b, "dalle_request_duration_seconds",
                         r ? NULL : "HTTP request duration by route.", label,
                         &m->request_seconds[r]);
    }
    render_histogram(&b, "dalle_request_queue_duration_seconds", "Time generation requests queued.",
                     "", &m->queue_seconds);
    render_histogram(&b, "dalle_batch_size", "Images in each decode step.", "", &m->batch_size);
    for (int s = 0; s < DALLE_STAGE_COUNT; s++) {
        char label[32];
        snprintf(label, sizeof label, "stage=\"%s\"", STAGE_NAME[s]);
        render_histogram(&b, "dalle_batch_duration_seconds",
                         s ? NULL : "Per-request stage time (decode: wall time in the batch).",
                         label, &m->stage_seconds[s]);
    }
    printf_sbuf(&b,
                "# HELP dalle_build_info Build information.\n# TYPE dalle_build_info gauge\n"
                "dalle_build_info{version=\"%s\"} 1\n",
                DALLE_SERVER_VERSION);
    render_process(&b, m);
    return dalle_sbuf_finish(&b, len);
}
