/* main.c — dalle-server: settings, devices, start-up order, signals, the graceful drain and
 * the exit after a device fault.
 *
 * Contract: a bad setting prints one line and exits 2 — so does a --model without a
 * config.json (checked before listening; without --model the bundled demo model is found
 * from the executable, common/install_dir.h), and a --device that names no
 * visible device (`cuda` on a machine without a GPU, `cuda:3` with two); `auto` takes
 * every visible GPU and falls back to the CPU. A failure to listen or to load the model
 * exits 1. The HTTP front end starts first (first log line: "listening on HOST:PORT"), then
 * each device loads the model and starts its scheduler (/ready turns 200 when all run).
 * SIGTERM or SIGINT: /ready → 503, new connections refused, queued requests → 503, the running
 * ones may finish within --drain seconds, every suspended connection gets its response,
 * exit 0. A fatal device fault: /health and /ready → 503 at once, every queued and running
 * request on every device → 503 device_error, every response is sent (up to 5 s), then
 * exit 3 without tearing the device down.
 * The signal handler and the fault handler only write a byte to a pipe that the main thread
 * reads (libraries start threads before main, so a sigmask/sigwait scheme cannot cover
 * them).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/install_dir.h"
#include "common/version.h"
#include "server/encode_pool.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/scheduler.h"

#define WAKE_FAULT 0xff /* pipe byte of a device fault; signals write their number */
#define EXIT_FAULT 3

static int signal_pipe[2];

static void on_signal(int sig) {
    const unsigned char b = (unsigned char)sig;
    (void)!write(signal_pipe[1], &b, 1);
}

/* Block until a signal or a device fault; returns the byte. */
static int wait_wake(void) {
    unsigned char b = 0;
    while (read(signal_pipe[0], &b, 1) != 1) {
    }
    return b;
}

/* The engine's fault handler (dalle.h): never returns. On a scheduler thread it fails that
 * scheduler's jobs, wakes the main thread and parks; elsewhere (a model loading) it exits. */
static void on_fault(const char *msg, void *user) {
    dalle_server *srv = user;
    fprintf(stderr, "device fault: %s\n", msg);
    atomic_store(&srv->faulted, 1);
    atomic_store(&srv->ready, 0);
    if (!dalle_scheduler_fault_here())
        _exit(EXIT_FAULT);
    const unsigned char b = WAKE_FAULT;
    (void)!write(signal_pipe[1], &b, 1);
    for (;;)
        pause();
}

/* cfg.device → srv->devices; 0, or -1 with msg (a bad setting). */
static int resolve_devices(dalle_server *srv, char *msg, size_t msg_size) {
    const dalle_server_config *c = &srv->cfg;
    const int gpus = dalle_backend_device_count("cuda");
    srv->n_devices = 0;
    if (c->device_kind == DALLE_DEVICE_CPU || (c->device_kind == DALLE_DEVICE_AUTO && !gpus)) {
        srv->devices[srv->n_devices++] = (dalle_device){"cpu", "cpu", 0};
        return 0;
    }
    if (!gpus) {
        snprintf(msg, msg_size, "--device %s: no CUDA device is visible (use auto or cpu)",
                 c->device);
        return -1;
    }
    const int n = c->n_gpus                         ? c->n_gpus
                  : gpus < DALLE_SERVER_MAX_DEVICES ? gpus
                                                    : DALLE_SERVER_MAX_DEVICES;
    for (int i = 0; i < n; i++) {
        const int k = c->n_gpus ? c->gpus[i] : i;
        if (k >= gpus) {
            snprintf(msg, msg_size, "--device %s: no CUDA device %d (%d visible)", c->device, k,
                     gpus);
            return -1;
        }
        dalle_device *d = &srv->devices[srv->n_devices++];
        *d = (dalle_device){.backend = "cuda", .ordinal = k};
        snprintf(d->name, sizeof d->name, "cuda:%d", k);
    }
    return 0;
}

/* cfg.model, or the bundled demo model when none is given, must hold config.json; 0, or -1
 * with msg. The full check (what config.json is, and the files it names) is the load, after
 * listening. */
static int resolve_model(dalle_server_config *c, char *msg, size_t msg_size) {
    if (!c->model) {
        char demo[PATH_MAX];
        if (dalle_demo_model_dir(demo, sizeof demo)) {
            snprintf(msg, msg_size, "no --model given and no bundled demo model at %.400s", demo);
            return -1;
        }
        c->model = strdup(demo);
        if (!c->model) {
            snprintf(msg, msg_size, "out of memory");
            return -1;
        }
    }
    char cfg[PATH_MAX + 16];
    snprintf(cfg, sizeof cfg, "%s/config.json", c->model);
    struct stat st;
    if (stat(cfg, &st) != 0) {
        snprintf(msg, msg_size, "--model %.300s: not a model directory (config.json: %s)", c->model,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Per device: load the model and start its scheduler. */
static dalle_status load_devices(dalle_server *srv, dalle_error *err) {
    for (int i = 0; i < srv->n_devices; i++) {
        dalle_model_params mp;
        dalle_model_params_default(&mp);
        mp.backend = srv->devices[i].backend;
        mp.device = srv->devices[i].ordinal;
        mp.threads = (int)srv->cfg.threads;
        dalle_status st = dalle_model_load(&srv->models[i], srv->cfg.model, &mp, err);
        if (st == DALLE_OK && i == 0) {
            srv->model = srv->models[0];
            dalle_model_get_info(srv->model, &srv->info);
        }
        if (st == DALLE_OK)
            st = dalle_scheduler_new(&srv->sched[i], srv, srv->models[i], err);
        if (st != DALLE_OK) {
            char m[sizeof err->msg + sizeof srv->devices[i].name + 2];
            snprintf(m, sizeof m, "%s: %s", srv->devices[i].name, err->msg);
            snprintf(err->msg, sizeof err->msg, "%.*s", (int)sizeof err->msg - 1, m);
            return st;
        }
    }
    return DALLE_OK;
}

int main(int argc, char **argv) {
    static dalle_server srv;
    char msg[512];
    switch (dalle_server_config_load(&srv.cfg, argc, argv, msg, sizeof msg)) {
    case DALLE_CONFIG_HELP: dalle_server_config_usage(stdout); return 0;
    case DALLE_CONFIG_VERSION: dalle_version_print(stdout, "dalle-server"); return 0;
    case DALLE_CONFIG_BAD: fprintf(stderr, "dalle-server: %s\n", msg); return 2;
    case DALLE_CONFIG_OK: break;
    }
    if (resolve_devices(&srv, msg, sizeof msg) || resolve_model(&srv.cfg, msg, sizeof msg)) {
        fprintf(stderr, "dalle-server: %s\n", msg);
        dalle_server_config_free(&srv.cfg);
        return 2;
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
    dalle_set_fault_handler(on_fault, &srv);

    int rc = 1;
    dalle_http *http = NULL;
    dalle_error err = {0};
    srv.metrics = dalle_metrics_new();
    if (!srv.metrics) {
        fprintf(stderr, "dalle-server: out of memory\n");
        goto out;
    }
    if (dalle_encode_pool_new(&srv.pool, (int)srv.cfg.jpeg_threads, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-server: %s\n", err.msg);
        goto out;
    }
    if (dalle_http_start(&http, &srv, msg, sizeof msg)) {
        fprintf(stderr, "dalle-server: %s\n", msg);
        goto out;
    }
    fprintf(stderr, "listening on %s:%d\n", srv.cfg.host, dalle_http_port(http));

    if (load_devices(&srv, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-server: %s\n", err.msg);
        dalle_http_quiesce(http);
        dalle_http_stop(http, 0);
        for (int i = 0; i < srv.n_devices; i++)
            if (srv.sched[i])
                dalle_scheduler_drain(srv.sched[i], 0, 0);
        goto out;
    }
    atomic_store(&srv.n_sched, srv.n_devices);
    atomic_store(&srv.ready, 1);
    char names[DALLE_SERVER_MAX_DEVICES * 16] = "";
    for (int i = 0; i < srv.n_devices; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? "," : "",
                 srv.devices[i].name);
    fprintf(stderr, "ready: model %s on %s, max batch %ld, queue %ld, jpeg threads %ld\n",
            srv.info.name, names, srv.cfg.max_batch, srv.cfg.queue, srv.cfg.jpeg_threads);

    const int wake = wait_wake();
    const int fault = wake == WAKE_FAULT;
    if (fault) {
        fprintf(stderr, "device fault: failing every request, then exiting\n");
    } else {
        fprintf(stderr, "%s: draining (up to %ld s)\n", wake == SIGINT ? "SIGINT" : "SIGTERM",
                srv.cfg.drain);
        atomic_store(&srv.draining, 1);
        atomic_store(&srv.ready, 0);
    }
    dalle_http_quiesce(http);
    for (int i = 0; i < srv.n_devices; i++)
        dalle_scheduler_drain(srv.sched[i], fault ? 0 : (double)srv.cfg.drain, fault);
    dalle_encode_pool_free(srv.pool); /* runs the answers still queued */
    srv.pool = NULL;
    dalle_http_stop(http, 5.0);
    if (atomic_load(&srv.faulted)) { /* also a fault during a drain */
        fprintf(stderr, "stopped after a device fault (exit %d)\n", EXIT_FAULT);
        _exit(EXIT_FAULT);
    }
    fprintf(stderr, "stopped\n");
    rc = 0;
out:
    for (int i = 0; i < srv.n_devices; i++) {
        dalle_scheduler_free(srv.sched[i]);
        dalle_model_free(srv.models[i]);
    }
    dalle_encode_pool_free(srv.pool);
    dalle_metrics_free(srv.metrics);
    dalle_server_config_free(&srv.cfg);
    return rc;
}
