/* main.c — dalle-server: settings, start-up order, signals and the graceful drain.
 *
 * Contract: a bad setting prints one line and exits 2; a failure to listen or to load the
 * model exits 1. The HTTP front end starts first (first log line: "listening on
 * HOST:PORT"), then the model loads and the scheduler starts (/ready turns 200). SIGTERM or
 * SIGINT: /ready → 503, no new connections, queued requests → 503, the running one may
 * finish within --drain seconds, every suspended connection gets its response, exit 0.
 * The signal handler only writes the signal number to a pipe that the main thread reads
 * (libraries start threads before main, so a sigmask/sigwait scheme cannot cover them).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "server/http.h"
#include "server/metrics.h"
#include "server/scheduler.h"

static int signal_pipe[2];

static void on_signal(int sig) {
    const unsigned char b = (unsigned char)sig;
    (void)!write(signal_pipe[1], &b, 1);
}

/* Block until SIGTERM or SIGINT; returns the signal number. */
static int wait_signal(void) {
    unsigned char b = 0;
    while (read(signal_pipe[0], &b, 1) != 1) {
    }
    return b;
}

int main(int argc, char **argv) {
    static dalle_server srv;
    char msg[512];
    switch (dalle_server_config_load(&srv.cfg, argc, argv, msg, sizeof msg)) {
    case DALLE_CONFIG_HELP: dalle_server_config_usage(stdout); return 0;
    case DALLE_CONFIG_BAD: fprintf(stderr, "dalle-server: %s\n", msg); return 2;
    case DALLE_CONFIG_OK: break;
    }
    if (pipe(signal_pipe)) {
        perror("dalle-server: pipe");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    dalle_http *http = NULL;
    dalle_scheduler *sched = NULL;
    srv.metrics = dalle_metrics_new();
    if (!srv.metrics) {
        fprintf(stderr, "dalle-server: out of memory\n");
        goto out;
    }
    if (dalle_http_start(&http, &srv, msg, sizeof msg)) {
        fprintf(stderr, "dalle-server: %s\n", msg);
        goto out;
    }
    fprintf(stderr, "listening on %s:%d\n", srv.cfg.host, dalle_http_port(http));

    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.threads = (int)srv.cfg.threads;
    dalle_error err = {0};
    if (dalle_model_load(&srv.model, srv.cfg.model, &mp, &err) != DALLE_OK ||
        (dalle_model_get_info(srv.model, &srv.info),
         dalle_scheduler_new(&sched, &srv, &err) != DALLE_OK)) {
        fprintf(stderr, "dalle-server: %s\n", err.msg);
        dalle_http_quiesce(http);
        dalle_http_stop(http, 0);
        goto out;
    }
    atomic_store(&srv.sched, sched);
    atomic_store(&srv.ready, 1);
    fprintf(stderr, "ready: model %s (%s), max batch %ld, queue %ld\n", srv.info.name,
            srv.info.backend, srv.cfg.max_batch, srv.cfg.queue);

    const int sig = wait_signal();
    fprintf(stderr, "%s: draining (up to %ld s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            srv.cfg.drain);
    atomic_store(&srv.draining, 1);
    atomic_store(&srv.ready, 0);
    dalle_http_quiesce(http);
    dalle_scheduler_drain(sched, (double)srv.cfg.drain);
    dalle_http_stop(http, 5.0);
    fprintf(stderr, "stopped\n");
    rc = 0;
out:
    dalle_scheduler_free(sched);
    dalle_model_free(srv.model);
    dalle_metrics_free(srv.metrics);
    dalle_server_config_free(&srv.cfg);
    return rc;
}
