/* request.c — POST /generate bodies → dalle_request, and the JSON error body.
 *
 * Contract: the body is untrusted bytes (not NUL-terminated). Nesting deeper than
 * DALLE_JSON_MAX_DEPTH is refused before jansson sees it; jansson (json_loadb with
 * JSON_REJECT_DUPLICATES) refuses bad syntax, bad UTF-8, \u0000, duplicate keys, trailing
 * data and numbers that do not fit. Status policy: malformed JSON, an unknown field or a
 * conflict (preview_every without "stream": true) → 400; a well-formed value of the wrong
 * type or out of range (preview_every outside [16, image_length]) → 422.
 * The dialect is picked by key: "text" → dalle-playground, otherwise native ("prompt").
 * The OpenAI route (/v1/images/generations) takes prompt, n (1..10), size ("auto" or the
 * model's own "RxR"), response_format ("b64_json"), seed (an extension, as /generate's),
 * model, user, quality, style (the last four accepted and ignored), and answers every
 * request error with 400, as OpenAI does.
 * Seeds the server picks are below 2^DALLE_RANDOM_SEED_BITS, so that a JavaScript number
 * holds them exactly; a client's seed may be any integer in [0, 2^63 - 1].
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "server/server.h"

#define DALLE_JSON_MAX_DEPTH   32
#define DALLE_RANDOM_SEED_BITS 53 /* exact as an IEEE double */

/* Replace each byte that does not start a valid UTF-8 sequence with '?': a message may
 * quote the body (jansson's error text cuts a multi-byte character) and a cut to the
 * buffer's size may split one; the JSON error body needs valid UTF-8. */
static void make_utf8(char *s) {
    for (size_t i = 0, n = strlen(s); i < n;) {
        utf8proc_int32_t c;
        const utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k > 0) {
            i += (size_t)k;
        } else {
            s[i++] = '?';
        }
    }
}

int dalle_http_error_set(dalle_http_error *e, int status, const char *code, const char *param,
                         const char *fmt, ...) {
    e->status = status;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    make_utf8(e->param);
    make_utf8(e->message);
    return -1;
}

static const char *error_type(int status) {
    if (status == 429)
        return "rate_limit_error";
    if (status == 503)
        return "service_unavailable_error";
    if (status >= 500)
        return "server_error";
    return "invalid_request_error";
}

char *dalle_error_body(const dalle_http_error *e, size_t *len) {
    json_t *root = json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "code", e->code, "message",
                             e->message, "param", e->param[0] ? json_string(e->param) : json_null(),
                             "type", error_type(e->status));
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s)
        *len = strlen(s);
    return s;
}

/* Deepest [ / { nesting outside strings; stops counting past the limit. */
static int json_depth(const char *p, size_t n) {
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < n && max <= DALLE_JSON_MAX_DEPTH; i++) {
        const char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

/* A number field, range-checked both as the double and as the float the sampler gets (so
 * 1e-270 for an open lower bound of 0 is refused here, not after it rounds to 0); -1 (422)
 * when it is not a JSON number or out of range. */
static int get_number(json_t *v, const char *key, double lo, double hi, int lo_open, float *out,
                      dalle_http_error *e) {
    if (!json_is_number(v))
        return dalle_http_error_set(e, 422, "invalid_type", key, "%s must be a number", key);
    const double x = json_number_value(v);
    const float f = (float)x;
    if (!isfinite(x) || x > hi || (lo_open ? x <= lo || f <= lo : x < lo) || f > hi)
        return dalle_http_error_set(e, 422, "out_of_range", key, "%s must be in %c%g, %g]", key,
                                    lo_open ? '(' : '[', lo, hi);
    *out = f;
    return 0;
}

/* An integer field; floats such as 2.0 are refused like "2". */
static int get_int(json_t *v, const char *key, json_int_t lo, json_int_t hi, json_int_t *out,
                   dalle_http_error *e) {
    if (!json_is_integer(v))
        return dalle_http_error_set(e, 422, "invalid_type", key, "%s must be an integer", key);
    const json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return dalle_http_error_set(
            e, 422, "out_of_range", key,
            "%s must be in [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT "]", key, lo, hi);
    *out = x;
    return 0;
}

/* Only whitespace (Unicode Z* and control characters), format characters such as U+200B
 * and U+FEFF, and other default-ignorable code points such as U+3164: nothing to draw.
 * s is valid UTF-8 (jansson checked it). */
static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        const utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0)
            return 0;
        const utf8proc_property_t *p = utf8proc_get_property(c);
        switch (p->category) {
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP:
        case UTF8PROC_CATEGORY_CC:
        case UTF8PROC_CATEGORY_CF: break;
        default:
            if (!p->ignorable)
                return 0;
        }
        i += (size_t)k;
    }
    return 1;
}

static int get_prompt(const dalle_server *srv, json_t *v, const char *key, dalle_request *req,
                      dalle_http_error *e) {
    if (!json_is_string(v))
        return dalle_http_error_set(e, 422, "invalid_type", key, "%s must be a string", key);
    const char *s = json_string_value(v);
    const size_t n = json_string_length(v);
    if (is_blank(s, n))
        return dalle_http_error_set(e, 422, "empty_prompt", key, "%s must not be empty", key);
    if (n > (size_t)srv->cfg.max_prompt)
        return dalle_http_error_set(e, 422, "prompt_too_long", key,
                                    "%s is %zu bytes, the limit is %ld", key, n,
                                    srv->cfg.max_prompt);
    req->prompt = strndup(s, n);
    if (!req->prompt)
        return dalle_http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
    req->prompt_len = n;
    return 0;
}

static uint64_t random_seed(void) {
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (counter++ << 40);
    x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33; /* splitmix finalizer */
    return x & ((UINT64_C(1) << DALLE_RANDOM_SEED_BITS) - 1);
}

static int get_seed(json_t *v, const char *key, dalle_gen_params *g, dalle_http_error *e) {
    json_int_t i;
    if (get_int(v, key, 0, DALLE_SEED_MAX, &i, e))
        return -1;
    g->seed = (uint64_t)i;
    return 0;
}

/* One field of an OpenAI body into req. */
static int set_openai_field(const dalle_server *srv, const char *key, json_t *v, dalle_request *req,
                            dalle_http_error *e) {
    json_int_t i;
    if (!strcmp(key, "prompt"))
        return get_prompt(srv, v, key, req, e);
    if (!strcmp(key, "n")) {
        const long max =
            srv->cfg.max_images < DALLE_OPENAI_MAX_N ? srv->cfg.max_images : DALLE_OPENAI_MAX_N;
        if (get_int(v, key, 1, max, &i, e))
            return -1;
        req->gen.n_images = (int)i;
        return 0;
    }
    if (!strcmp(key, "seed"))
        return get_seed(v, key, &req->gen, e);
    if (strcmp(key, "size") && strcmp(key, "response_format") && strcmp(key, "model") &&
        strcmp(key, "user") && strcmp(key, "quality") && strcmp(key, "style"))
        return dalle_http_error_set(e, 400, "unknown_field", key, "unknown field '%s'", key);
    if (!json_is_string(v))
        return dalle_http_error_set(e, 400, "invalid_type", key, "%s must be a string", key);
    const char *s = json_string_value(v);
    if (!strcmp(key, "size") && strcmp(s, "auto")) {
        const int r = srv->info.image_size;
        char own[32];
        snprintf(own, sizeof own, "%dx%d", r, r);
        if (strcmp(s, own))
            return dalle_http_error_set(e, 400, "unsupported", key,
                                        "size must be %s or auto (this model makes %s images)", own,
                                        own);
    }
    if (!strcmp(key, "response_format") && strcmp(s, "b64_json"))
        return dalle_http_error_set(e, 400, "unsupported", key,
                                    "response_format must be b64_json (no image URLs are served)");
    return 0;
}

/* One field of a /generate body into req. */
static int set_field(const dalle_server *srv, const char *key, json_t *v, dalle_request *req,
                     dalle_http_error *e) {
    json_int_t i;
    float d;
    dalle_gen_params *g = &req->gen;
    if (!strcmp(key, "prompt") || !strcmp(key, "text"))
        return get_prompt(srv, v, key, req, e);
    if (!strcmp(key, "n") || !strcmp(key, "num_images")) {
        if (get_int(v, key, 1, srv->cfg.max_images, &i, e))
            return -1;
        g->n_images = (int)i;
    } else if (!strcmp(key, "seed")) {
        return get_seed(v, key, g, e);
    } else if (!strcmp(key, "temperature")) {
        if (get_number(v, key, 0, DALLE_TEMPERATURE_MAX, 1, &d, e))
            return -1;
        g->temperature = d;
    } else if (!strcmp(key, "top_p")) {
        if (get_number(v, key, 0, DALLE_TOP_P_MAX, 1, &d, e))
            return -1;
        g->top_p = d;
    } else if (!strcmp(key, "cond_scale")) {
        if (get_number(v, key, DALLE_COND_SCALE_MIN, DALLE_COND_SCALE_MAX, 0, &d, e))
            return -1;
        g->cond_scale = d;
    } else if (!strcmp(key, "top_k")) {
        if (get_int(v, key, DALLE_TOP_K_MIN, srv->info.image_vocab_size, &i, e))
            return -1;
        g->top_k = (int)i;
    } else if (!strcmp(key, "quality")) {
        if (get_int(v, key, DALLE_QUALITY_MIN, DALLE_QUALITY_MAX, &i, e))
            return -1;
        req->quality = (int)i;
    } else if (!strcmp(key, "subsampling")) {
        if (get_int(v, key, 420, 444, &i, e))
            return -1;
        if (i != 420 && i != 422 && i != 444)
            return dalle_http_error_set(e, 422, "out_of_range", key,
                                        "subsampling must be 444, 422 or 420");
        req->subsampling = (int)i;
    } else if (!strcmp(key, "stream")) {
        if (!json_is_boolean(v))
            return dalle_http_error_set(e, 422, "invalid_type", key, "stream must be a boolean");
        req->stream = json_is_true(v);
    } else if (!strcmp(key, "preview_every")) {
        if (get_int(v, key, DALLE_PREVIEW_MIN_EVERY, srv->info.image_length, &i, e))
            return -1;
        req->preview_every = (int)i;
    } else if (!strcmp(key, "rank")) {
        if (!json_is_boolean(v))
            return dalle_http_error_set(e, 422, "invalid_type", key, "rank must be a boolean");
        if (json_is_true(v) && !srv->info.has_clip)
            return dalle_http_error_set(e, 422, "unsupported", key,
                                        "rank needs CLIP, and this model has none");
        req->rank = json_is_true(v);
    } else {
        return dalle_http_error_set(e, 400, "unknown_field", key, "unknown field '%s'", key);
    }
    return 0;
}

int dalle_request_parse(const dalle_server *srv, int openai, const char *body, size_t len,
                        dalle_request *req, dalle_http_error *e) {
    memset(req, 0, sizeof *req);
    if (json_depth(body, len) > DALLE_JSON_MAX_DEPTH)
        return dalle_http_error_set(e, 400, "invalid_json", NULL, "JSON nesting deeper than %d",
                                    DALLE_JSON_MAX_DEPTH);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return dalle_http_error_set(e, 400, "invalid_json", NULL, "invalid JSON at byte %d: %s",
                                    je.position, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = dalle_http_error_set(e, 422, "invalid_type", NULL, "the body must be a JSON object");
    } else if (!openai && json_object_get(root, "prompt") && json_object_get(root, "text")) {
        rc = dalle_http_error_set(e, 400, "conflict", "text", "give prompt or text, not both");
    } else if (!openai && json_object_get(root, "n") && json_object_get(root, "num_images")) {
        rc = dalle_http_error_set(e, 400, "conflict", "num_images",
                                  "give n or num_images, not both");
    } else {
        dalle_gen_params_default(srv->model, &req->gen);
        req->gen.seed = random_seed();
        dalle_output_params o;
        dalle_output_params_default(srv->model, &o);
        req->rank = o.rank;
        req->quality = o.jpeg_quality;
        req->subsampling = o.jpeg_subsampling;
        req->dialect = openai                          ? DALLE_DIALECT_OPENAI
                       : json_object_get(root, "text") ? DALLE_DIALECT_PLAYGROUND
                                                       : DALLE_DIALECT_NATIVE;
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            rc = openai ? set_openai_field(srv, key, v, req, e) : set_field(srv, key, v, req, e);
            if (rc)
                break;
        }
        if (!rc && !req->prompt)
            rc = dalle_http_error_set(e, 422, "missing_field", "prompt", "prompt is required");
        if (!rc && req->preview_every && !req->stream)
            rc = dalle_http_error_set(e, 400, "conflict", "preview_every",
                                      "preview_every needs \"stream\": true");
    }
    json_decref(root);
    if (rc && openai && e->status == 422)
        e->status = 400;
    if (rc)
        dalle_request_free(req);
    return rc;
}

void dalle_request_free(dalle_request *req) {
    free(req->prompt);
    req->prompt = NULL;
}
