/* server_config.h — dalle-server settings: defaults, flags, DALLE_* env vars, a JSON file.
 *
 * Contract: every setting has one row in a table (flag, env var, JSON key, type, range,
 * default, help). dalle_server_config_load applies, in order, the defaults, the JSON file
 * (--config FILE or DALLE_CONFIG), the environment and the flags; the first bad setting
 * fills msg with one line naming it and the call returns DALLE_CONFIG_BAD. Strings in
 * the result point into argv, the environment or the config's own storage; free with
 * dalle_server_config_free.
 */
#ifndef DALLE_CONFIG_SERVER_CONFIG_H
#define DALLE_CONFIG_SERVER_CONFIG_H

#include <stdio.h>

#define DALLE_SERVER_MAX_BATCH   256 /* the largest --max-batch */
#define DALLE_SERVER_MAX_IMAGES  256 /* the largest --max-images */
#define DALLE_SERVER_MAX_DEVICES 16  /* GPUs one server drives */

/* --device: auto (every visible GPU, else the CPU), cpu, cuda (every visible GPU) or
 * cuda:I,J,… (those GPUs). Resolved against the visible devices by the server. */
typedef enum { DALLE_DEVICE_AUTO = 0, DALLE_DEVICE_CPU, DALLE_DEVICE_CUDA } dalle_device_kind;

typedef struct {
    char *model;       /* model directory; NULL: the bundled demo model */
    char *host;        /* bind address */
    long port;         /* 0 = any free port */
    long queue;        /* requests waiting for the scheduler */
    long max_batch;    /* images decoded together */
    long max_images;   /* the largest n of one request (above max_batch: decoded in parts) */
    long threads;      /* CPU compute threads, 0 = all cores */
    long http_threads; /* libmicrohttpd worker threads */
    long body_limit;   /* request body bytes */
    long max_prompt;   /* prompt bytes */
    long timeout;      /* seconds idle before a request line or mid-response */
    /* seconds from a request line to the end of its body */
    long receive_timeout;
    long deadline;     /* a request still queued after this many seconds gets 503 */
    long drain;        /* seconds in-flight work may run on after SIGTERM */
    long max_conns;    /* open connections */
    long per_ip_conns; /* open connections per client address, 0 = no limit */
    char *api_key;     /* inference routes need "Authorization: Bearer KEY"; NULL = open */
    long jpeg_threads; /* threads that JPEG-encode and base64 the images */
    char *device;      /* the --device text */
    char *log_format;  /* the --log-format text: "text" or "json" */
    int log_json;      /* parsed from log_format: access lines as JSON objects */
    /* parsed from device: kind, and for cuda:I,J,… the ordinals (n_gpus = 0: every GPU) */
    dalle_device_kind device_kind;
    int n_gpus;
    int gpus[DALLE_SERVER_MAX_DEVICES];
} dalle_server_config;

typedef enum {
    DALLE_CONFIG_OK = 0,
    DALLE_CONFIG_HELP,
    DALLE_CONFIG_VERSION,
    DALLE_CONFIG_BAD
} dalle_config_result;

dalle_config_result dalle_server_config_load(dalle_server_config *c, int argc, char **argv,
                                             char *msg, size_t msg_size);
void dalle_server_config_free(dalle_server_config *c);
void dalle_server_config_usage(FILE *f);

#endif /* DALLE_CONFIG_SERVER_CONFIG_H */
