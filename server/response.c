/* response.c — a finished generation as the JSON of its dialect.
 *
 * Contract: native → {images, scores, indices, version, id, model, prompt, seed,
 * timings_ms {queue, text, decode, vqgan, clip, jpeg, total}}; dalle-playground →
 * {generatedImgs, generatedImgsFormat: "jpeg"}; OpenAI → {created, data: [{b64_json}], seed}
 * (seed: an extension, the request's or the one the server picked).
 * Images are base64 JPEG strings, best first when ranked. A preview event's data is
 * {step, steps, images}. Returns NULL on any allocation failure (nothing leaks).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base64.h"
#include "server/server.h"

/* The images as an array of base64 strings; NULL when out of memory. */
static json_t *image_array(const dalle_result *r) {
    json_t *a = json_array();
    for (int k = 0; a && k < r->n_images; k++) {
        const dalle_image *im = &r->images[k];
        const size_t n = dalle_base64_encoded_len(im->jpeg_size);
        char *b = malloc(n + 1);
        json_t *s = NULL;
        if (b) {
            dalle_base64_encode(im->jpeg, im->jpeg_size, b);
            s = json_stringn_nocheck(b, n);
            free(b);
        }
        if (!s || json_array_append_new(a, s)) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

static json_t *native_body(const dalle_server *srv, const dalle_request *req, const char *id,
                           const dalle_result *r, double queue_ms, json_t *images) {
    json_t *scores = json_array(), *indices = json_array();
    int ok = scores && indices;
    for (int k = 0; ok && k < r->n_images; k++)
        ok = !json_array_append_new(scores, json_real(r->images[k].score)) &&
             !json_array_append_new(indices, json_integer(r->images[k].index));
    if (!ok) {
        json_decref(scores);
        json_decref(indices);
        json_decref(images);
        return NULL;
    }
    const dalle_timings *t = &r->timings;
    return json_pack("{s:o, s:o, s:o, s:s, s:s, s:s, s:s%, s:I, s:{s:f, s:f, s:f, s:f, s:f, s:f, "
                     "s:f}}",
                     "images", images, "scores", scores, "indices", indices, "version",
                     DALLE_SERVER_VERSION, "id", id, "model", srv->info.name, "prompt", req->prompt,
                     req->prompt_len, "seed", (json_int_t)req->gen.seed, "timings_ms", "queue",
                     queue_ms, "text", t->text_ms + t->encode_ms, "decode", t->decode_ms, "vqgan",
                     t->vqgan_ms, "clip", t->clip_ms, "jpeg", t->jpeg_ms, "total",
                     queue_ms + t->total_ms);
}

static json_t *openai_body(const dalle_request *req, json_t *images) {
    json_t *data = json_array();
    size_t i;
    json_t *img;
    json_array_foreach(images, i, img) {
        if (!data || json_array_append_new(data, json_pack("{s:O}", "b64_json", img))) {
            json_decref(data);
            data = NULL;
        }
    }
    json_decref(images);
    if (!data)
        return NULL;
    return json_pack("{s:I, s:o, s:I}", "created", (json_int_t)time(NULL), "data", data, "seed",
                     (json_int_t)req->gen.seed);
}

static char *dump(json_t *root, size_t *len) {
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s)
        *len = strlen(s);
    return s;
}

char *dalle_preview_body(const dalle_result *r, int step, int steps, size_t *len) {
    json_t *images = image_array(r);
    if (!images)
        return NULL;
    return dump(json_pack("{s:i, s:i, s:o}", "step", step, "steps", steps, "images", images), len);
}

char *dalle_response_body(const dalle_server *srv, const dalle_request *req, const char *id,
                          const dalle_result *r, double queue_ms, size_t *len) {
    json_t *images = image_array(r);
    if (!images)
        return NULL;
    json_t *root;
    switch (req->dialect) {
    case DALLE_DIALECT_PLAYGROUND:
        root = json_pack("{s:o, s:s}", "generatedImgs", images, "generatedImgsFormat", "jpeg");
        break;
    case DALLE_DIALECT_OPENAI: root = openai_body(req, images); break;
    default: root = native_body(srv, req, id, r, queue_ms, images); break;
    }
    return dump(root, len);
}
