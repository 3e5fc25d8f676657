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

#define DALLE_SERVER_MAX_BATCH 256 /* the largest --max-batch */

typedef struct {
    char *model;       /* model directory (required) */
    char *host;        /* bind address */
    long port;         /* 0 = any free port */
    long queue;        /* requests waiting for the scheduler */
    long max_batch;    /* images decoded together; also the largest n of one request */
    long threads;      /* CPU compute threads, 0 = all cores */
    long http_threads; /* libmicrohttpd worker threads */
    long body_limit;   /* request body bytes */
    long max_prompt;   /* prompt bytes */
    long timeout;      /* idle connection timeout, seconds */
    long deadline;     /* a request still queued after this many seconds gets 503 */
    long drain;        /* seconds in-flight work may run on after SIGTERM */
    long max_conns;    /* open connections */
    long per_ip_conns; /* open connections per client address, 0 = no limit */
    char *api_key;     /* inference routes need "Authorization: Bearer KEY"; NULL = open */
} dalle_server_config;

typedef enum { DALLE_CONFIG_OK = 0, DALLE_CONFIG_HELP, DALLE_CONFIG_BAD } dalle_config_result;

dalle_config_result dalle_server_config_load(dalle_server_config *c, int argc, char **argv,
                                             char *msg, size_t msg_size);
void dalle_server_config_free(dalle_server_config *c);
void dalle_server_config_usage(FILE *f);

#endif /* DALLE_CONFIG_SERVER_CONFIG_H */
