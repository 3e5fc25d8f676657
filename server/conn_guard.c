/* conn_guard.c — connection counting, accept refusal, receive deadlines and raw rejections
 * (conn_guard.h).
 *
 * Each connection MHD starts gets a guarded_conn (its MHD socket context) in a doubly
 * linked list under g->mu: its fd, the time its current wait began (`since`), whether its
 * request line arrived (`line_at`) and whether the request is complete (`receiving` = 0).
 * The reaper walks the list every DALLE_GUARD_TICK_MS and shuts down the sockets past
 * their deadline (shutdown(2), never close: MHD sees end-of-file, finishes the request
 * with an error and closes the fd itself after its CLOSED notification, which takes g->mu
 * to unlink the entry).
 */
#include "server/conn_guard.h"

#include <ctype.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define DALLE_GUARD_TICK_MS 100
/* Accepts that may be in flight on the MHD threads between our count and MHD's. */
#define DALLE_GUARD_HEADROOM 64
/* A request line longer than this is refused by MHD's buffer limit long before. */
#define DALLE_GUARD_MAX_URI (1 << 20)

typedef struct guarded_conn {
    struct guarded_conn *prev, *next;
    dalle_conn_guard *g;
    int fd;
    double since;   /* connection start or previous response sent, ms */
    double line_at; /* request line received, ms; 0 before */
    int receiving;  /* the request is not complete yet */
    int shut;       /* the reaper or a rejection shut the socket down */
    int answered;   /* the status written straight to the socket, or 0 */
    size_t uri_len; /* strlen of the raw URI at the request line */
    int uri_bad;    /* the raw URI holds a control byte (percent-encoded or not) */
} guarded_conn;

struct dalle_conn_guard {
    pthread_mutex_t mu;
    pthread_cond_t stop_cv;
    pthread_t reaper;
    int stop;
    guarded_conn *head;
    atomic_long open;
    long max_conns;
    double idle_ms, receive_ms;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static guarded_conn *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static const char *reason(int status) {
    switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    default: return "Bad Request";
    }
}

/* Write the whole response (best effort: the socket is non-blocking and the response is
 * small) and shut the socket down; g->mu held by the caller. */
static void write_and_shut(guarded_conn *k, int status, const char *id, const char *body,
                           size_t len) {
    char head[512];
    const int n = snprintf(head, sizeof head,
                           "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: "
                           "application/json\r\nContent-Length: %zu\r\n"
                           "Access-Control-Allow-Origin: *\r\n%s%s%s\r\n",
                           status, reason(status), len, id ? "X-Request-Id: " : "", id ? id : "",
                           id ? "\r\n" : "");
    if (n > 0 && (size_t)n < sizeof head &&
        send(k->fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n && len)
        (void)!send(k->fd, body, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(k->fd, SHUT_RDWR);
    k->shut = 1;
    k->answered = status;
}

static const char TIMEOUT_BODY[] =
    "{\"error\":{\"code\":\"request_timeout\",\"message\":\"the request's headers and body "
    "did not arrive within the receive timeout\",\"param\":null,\"type\":"
    "\"invalid_request_error\"}}";

static void *reap(void *arg) {
    dalle_conn_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        const double t = now_ms();
        for (guarded_conn *k = g->head; k; k = k->next) {
            if (k->shut || !k->receiving)
                continue;
            if (k->line_at && t - k->line_at > g->receive_ms)
                write_and_shut(k, 408, NULL, TIMEOUT_BODY, sizeof TIMEOUT_BODY - 1);
            else if (!k->line_at && t - k->since > g->idle_ms) {
                shutdown(k->fd, SHUT_RDWR);
                k->shut = 1;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += DALLE_GUARD_TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->stop_cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

dalle_conn_guard *dalle_conn_guard_create(long max_conns, long idle_s, long receive_s) {
    dalle_conn_guard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->max_conns = max_conns;
    g->idle_ms = (double)idle_s * 1e3;
    g->receive_ms = (double)receive_s * 1e3;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->stop_cv, NULL);
    if (pthread_create(&g->reaper, NULL, reap, g)) {
        pthread_cond_destroy(&g->stop_cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void dalle_conn_guard_destroy(dalle_conn_guard *g) {
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_signal(&g->stop_cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->reaper, NULL);
    pthread_cond_destroy(&g->stop_cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

unsigned dalle_conn_guard_mhd_limit(const dalle_conn_guard *g) {
    return (unsigned)g->max_conns + DALLE_GUARD_HEADROOM;
}

enum MHD_Result dalle_conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr, (void)addrlen;
    const dalle_conn_guard *g = cls;
    return atomic_load(&g->open) < g->max_conns ? MHD_YES : MHD_NO;
}

void dalle_conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_ctx,
                             enum MHD_ConnectionNotificationCode code) {
    dalle_conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        guarded_conn *k = calloc(1, sizeof *k);
        const union MHD_ConnectionInfo *i =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        atomic_fetch_add(&g->open, 1);
        if (!k || !i) { /* untracked: counted, but no deadline (out of memory only) */
            free(k);
            *socket_ctx = NULL;
            return;
        }
        k->g = g;
        k->fd = i->connect_fd;
        k->since = now_ms();
        k->receiving = 1;
        pthread_mutex_lock(&g->mu);
        k->next = g->head;
        if (g->head)
            g->head->prev = k;
        g->head = k;
        pthread_mutex_unlock(&g->mu);
        *socket_ctx = k;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        guarded_conn *k = *socket_ctx;
        atomic_fetch_sub(&g->open, 1);
        if (!k)
            return;
        pthread_mutex_lock(&g->mu);
        if (k->prev)
            k->prev->next = k->next;
        else
            g->head = k->next;
        if (k->next)
            k->next->prev = k->prev;
        pthread_mutex_unlock(&g->mu);
        free(k);
        *socket_ctx = NULL;
    }
}

/* A byte a request path must not hold: C0 controls and DEL. */
static int is_control(unsigned char b) {
    return b < 0x20 || b == 0x7f;
}

/* The byte "%XX" at s encodes, or -1 when s does not start with one. */
static int percent_byte(const char *s) {
    if (s[0] != '%' || !isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
        return -1;
    const char digits[3] = {s[1], s[2], 0};
    return (int)strtol(digits, NULL, 16);
}

void *dalle_conn_guard_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    dalle_conn_guard *g = cls;
    guarded_conn *k = conn_of(c);
    if (!k)
        return NULL;
    const size_t n = strlen(uri);
    int bad = 0, in_path = 1; /* raw control bytes anywhere; encoded ones in the path */
    for (size_t i = 0; i < n && !bad; i++) {
        const unsigned char b = (unsigned char)uri[i];
        in_path &= b != '?';
        const int decoded = in_path ? percent_byte(uri + i) : -1; /* reads at most to the NUL */
        bad = is_control(b) || (decoded >= 0 && is_control((unsigned char)decoded));
    }
    pthread_mutex_lock(&g->mu);
    k->line_at = now_ms();
    k->uri_len = n;
    k->uri_bad = bad;
    pthread_mutex_unlock(&g->mu);
    return NULL; /* becomes *req_cls: the handler allocates its own */
}

int dalle_conn_guard_raw_uri_ok(struct MHD_Connection *c, const char *url, const char *version) {
    const guarded_conn *k = conn_of(c);
    if (!k)
        return 1;
    /* MHD 0.9.75 keeps the request line in place: the raw URI starts at url and ends at
     * the space (now a NUL) before the version; a URI shorter than that held a raw NUL. */
    const int layout_known = version > url && (size_t)(version - url) <= DALLE_GUARD_MAX_URI;
    return !k->uri_bad && (!layout_known || (size_t)(version - 1 - url) == k->uri_len);
}

static void set_receiving(struct MHD_Connection *c, int receiving) {
    guarded_conn *k = conn_of(c);
    if (!k)
        return;
    pthread_mutex_lock(&k->g->mu);
    k->receiving = receiving;
    if (receiving) {
        k->line_at = 0;
        k->since = now_ms();
    }
    pthread_mutex_unlock(&k->g->mu);
}

int dalle_conn_guard_answered(struct MHD_Connection *c) {
    const guarded_conn *k = conn_of(c);
    if (!k)
        return 0;
    pthread_mutex_lock(&k->g->mu);
    const int status = k->answered;
    pthread_mutex_unlock(&k->g->mu);
    return status;
}

void dalle_conn_guard_received(struct MHD_Connection *c) {
    set_receiving(c, 0);
}

void dalle_conn_guard_completed(struct MHD_Connection *c) {
    set_receiving(c, 1);
}

int dalle_conn_guard_reject(struct MHD_Connection *c, int status, const char *request_id,
                            const char *body, size_t len) {
    guarded_conn *k = conn_of(c);
    if (!k)
        return -1;
    pthread_mutex_lock(&k->g->mu);
    if (!k->shut)
        write_and_shut(k, status, request_id, body, len);
    pthread_mutex_unlock(&k->g->mu);
    return 0;
}
