/* server_config.c — the settings table and its three sources (server_config.h).
 *
 * Contract: one row per setting; numbers are decimal integers checked against [min, max];
 * a repeated source overrides the earlier one (defaults < file < env < flags). Messages
 * name the source ("--port", "DALLE_PORT", "config.json: port") and the allowed range.
 */
#include "config/server_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

typedef struct {
    const char *key; /* JSON key; the flag is --key with '_' → '-', the env var DALLE_KEY */
    int is_str;
    size_t off;
    long min, max;
    const char *def;
    const char *help;
} setting;

#define NUM(k, lo, hi, d, h)                                                                       \
    { #k, 0, offsetof(dalle_server_config, k), lo, hi, d, h }
#define STR(k, d, h)                                                                               \
    { #k, 1, offsetof(dalle_server_config, k), 0, 0, d, h }

static const setting SETTINGS[] = {
    STR(model, NULL,
        "model directory (config.json, safetensors, tokenizer files); none: the bundled demo "
        "model, PREFIX/share/dalle-server/models/demo of an installed dalle-server, models/demo "
        "of the checkout for build/dalle-server"),
    STR(host, "127.0.0.1", "bind address (IPv4)"),
    NUM(port, 0, 65535, "8080", "TCP port; 0 picks a free one (printed in the first log line)"),
    NUM(queue, 1, 100000, "16", "requests waiting for the scheduler; more get 429"),
    NUM(max_batch, 1, DALLE_SERVER_MAX_BATCH, "4", "images decoded together"),
    NUM(max_images, 1, DALLE_SERVER_MAX_IMAGES, "16",
        "the largest n of one request; above --max-batch it decodes in parts of --max-batch "
        "images, one after another (on the cpu backend the images of one batch)"),
    NUM(threads, 0, 1024, "0", "CPU compute threads; 0 = all cores"),
    NUM(http_threads, 1, 64, "2", "HTTP worker threads"),
    NUM(body_limit, 64, 16777216, "65536", "request body bytes; larger bodies get 413"),
    NUM(max_prompt, 1, DALLE_MAX_PROMPT_BYTES, "1024", "prompt bytes; longer prompts get 422"),
    NUM(timeout, 1, 3600, "30",
        "seconds a connection may wait idle: for its next request line, or stalled mid-response"),
    NUM(receive_timeout, 1, 3600, "10",
        "seconds from a request line to the end of its body; slower requests get 408"),
    NUM(deadline, 1, 86400, "300", "seconds a request may wait in the queue before 503"),
    NUM(drain, 0, 3600, "30", "seconds in-flight work may finish after SIGTERM/SIGINT"),
    NUM(max_conns, 4, 100000, "256", "open connections; more are closed at once"),
    NUM(per_ip_conns, 0, 100000, "64",
        "open connections per client address, more are closed at once; 0 = no limit (behind a "
        "proxy)"),
    STR(api_key, NULL,
        "if set, POST routes need 'Authorization: Bearer KEY' (else 401); prefer the env var"),
    NUM(jpeg_threads, 1, 64, "2", "threads that JPEG-encode and base64 the images"),
    STR(device, "auto",
        "auto (every visible GPU, else the CPU), cpu, cuda (every visible GPU) or cuda:I,J,...; "
        "one scheduler per GPU"),
    STR(log_format, "text",
        "access log lines on stderr: text (key=value) or json (one object per line)"),
};
#define N_SETTINGS (sizeof SETTINGS / sizeof SETTINGS[0])

static void flag_name(const setting *s, char *buf, size_t n) {
    snprintf(buf, n, "--%s", s->key);
    for (char *p = buf + 2; *p; p++)
        if (*p == '_')
            *p = '-';
}

static void env_name(const setting *s, char *buf, size_t n) {
    snprintf(buf, n, "DALLE_%s", s->key);
    for (char *p = buf + 6; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
}

void dalle_server_config_usage(FILE *f) {
    fprintf(f, "usage: dalle-server [--model DIR] [options]\n"
               "Every option is also an environment variable (DALLE_<NAME>) and a key of the JSON\n"
               "file given with --config FILE (DALLE_CONFIG); flags win over env, env over the\n"
               "file.\n\n");
    fprintf(f, "  %-18s %s\n", "--config FILE",
            "JSON object of settings (keys as below, '_' for '-')");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char flag[64], env[64], arg[80];
        flag_name(&SETTINGS[i], flag, sizeof flag);
        env_name(&SETTINGS[i], env, sizeof env);
        snprintf(arg, sizeof arg, "%s %s", flag, SETTINGS[i].is_str ? "STR" : "N");
        fprintf(f, "  %-18s %s [%s, default: %s]\n", arg, SETTINGS[i].help, env,
                SETTINGS[i].def ? SETTINGS[i].def : "none");
    }
    fprintf(f, "  %-18s %s\n", "--help", "this text");
    fprintf(f, "  %-18s %s\n", "--version", "version, git describe and the backends built in");
}

/* Set one setting from text; 0 or -1 with msg. */
static int set_text(dalle_server_config *c, const setting *s, const char *val, const char *src,
                    char *msg, size_t msg_size) {
    char *base = (char *)c;
    if (s->is_str) {
        if (!*val) {
            snprintf(msg, msg_size, "%s: must not be empty", src);
            return -1;
        }
        char *dup = strdup(val);
        if (!dup) {
            snprintf(msg, msg_size, "%s: out of memory", src);
            return -1;
        }
        char **dst = (char **)(base + s->off);
        free(*dst);
        *dst = dup;
        return 0;
    }
    errno = 0;
    char *end;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < s->min || v > s->max) {
        snprintf(msg, msg_size, "%s: '%s' is not an integer in [%ld, %ld]", src, val, s->min,
                 s->max);
        return -1;
    }
    *(long *)(base + s->off) = v;
    return 0;
}

static const setting *find_key(const char *key) {
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(SETTINGS[i].key, key))
            return &SETTINGS[i];
    return NULL;
}

static int load_file(dalle_server_config *c, const char *path, char *msg, size_t msg_size) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(msg, msg_size, "%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(msg, msg_size, "%s: must be a JSON object", path);
        rc = -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (rc)
            break;
        const setting *s = find_key(key);
        char src[512], num[32];
        snprintf(src, sizeof src, "%s: %s", path, key);
        if (!s) {
            snprintf(msg, msg_size, "%s: unknown setting", src);
            rc = -1;
        } else if (s->is_str && json_is_string(v)) {
            rc = set_text(c, s, json_string_value(v), src, msg, msg_size);
        } else if (!s->is_str && json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            rc = set_text(c, s, num, src, msg, msg_size);
        } else {
            snprintf(msg, msg_size, "%s: must be %s", src, s->is_str ? "a string" : "an integer");
            rc = -1;
        }
    }
    json_decref(root);
    return rc;
}

void dalle_server_config_free(dalle_server_config *c) {
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (SETTINGS[i].is_str) {
            char **p = (char **)((char *)c + SETTINGS[i].off);
            free(*p);
            *p = NULL;
        }
}

/* c->device → device_kind, n_gpus, gpus; 0 or -1 with msg. */
static int parse_device(dalle_server_config *c, char *msg, size_t msg_size) {
    const char *d = c->device;
    c->n_gpus = 0;
    if (!strcmp(d, "auto"))
        c->device_kind = DALLE_DEVICE_AUTO;
    else if (!strcmp(d, "cpu"))
        c->device_kind = DALLE_DEVICE_CPU;
    else if (!strcmp(d, "cuda"))
        c->device_kind = DALLE_DEVICE_CUDA;
    else if (!strncmp(d, "cuda:", 5)) {
        c->device_kind = DALLE_DEVICE_CUDA;
        for (const char *p = d + 5;; p++) {
            char *end;
            errno = 0;
            const long k = strtol(p, &end, 10);
            int dup = 0;
            for (int i = 0; i < c->n_gpus; i++)
                dup |= c->gpus[i] == k;
            if (end == p || *p == '-' || *p == '+' || errno || k > 1023 || dup ||
                (*end && *end != ',') || c->n_gpus == DALLE_SERVER_MAX_DEVICES) {
                snprintf(msg, msg_size,
                         "--device: '%s' must be cuda:I,J,... with up to %d distinct GPU "
                         "numbers",
                         d, DALLE_SERVER_MAX_DEVICES);
                return -1;
            }
            c->gpus[c->n_gpus++] = (int)k;
            if (!*end)
                break;
            p = end;
        }
    } else {
        snprintf(msg, msg_size, "--device: '%s' is not auto, cpu, cuda or cuda:I,J,...", d);
        return -1;
    }
    return 0;
}

dalle_config_result dalle_server_config_load(dalle_server_config *c, int argc, char **argv,
                                             char *msg, size_t msg_size) {
    memset(c, 0, sizeof *c);
    const char *file = getenv("DALLE_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return DALLE_CONFIG_HELP;
        if (!strcmp(argv[i], "--version"))
            return DALLE_CONFIG_VERSION;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                snprintf(msg, msg_size, "--config: needs a value");
                return DALLE_CONFIG_BAD;
            }
            file = argv[++i];
        }
    }
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (SETTINGS[i].def && set_text(c, &SETTINGS[i], SETTINGS[i].def, "default", msg, msg_size))
            goto bad;
    if (file && load_file(c, file, msg, msg_size))
        goto bad;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char env[64];
        env_name(&SETTINGS[i], env, sizeof env);
        const char *v = getenv(env);
        if (v && set_text(c, &SETTINGS[i], v, env, msg, msg_size))
            goto bad;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            i++;
            continue;
        }
        const setting *s = NULL;
        for (size_t k = 0; k < N_SETTINGS && !s; k++) {
            char flag[64];
            flag_name(&SETTINGS[k], flag, sizeof flag);
            if (!strcmp(argv[i], flag))
                s = &SETTINGS[k];
        }
        if (!s) {
            snprintf(msg, msg_size, "%s: unknown option (see --help)", argv[i]);
            goto bad;
        }
        if (i + 1 >= argc) {
            snprintf(msg, msg_size, "%s: needs a value", argv[i]);
            goto bad;
        }
        if (set_text(c, s, argv[i + 1], argv[i], msg, msg_size))
            goto bad;
        i++;
    }
    struct in_addr addr;
    if (inet_pton(AF_INET, c->host, &addr) != 1) {
        snprintf(msg, msg_size, "--host: '%s' is not an IPv4 address", c->host);
        goto bad;
    }
    if (parse_device(c, msg, msg_size))
        goto bad;
    c->log_json = !strcmp(c->log_format, "json");
    if (!c->log_json && strcmp(c->log_format, "text")) {
        snprintf(msg, msg_size, "--log-format: '%s' is not text or json", c->log_format);
        goto bad;
    }
    return DALLE_CONFIG_OK;
bad:
    dalle_server_config_free(c);
    return DALLE_CONFIG_BAD;
}
