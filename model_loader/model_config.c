/* model_config.c — config.json schema as data: a table of sections and fields walked once
 * (types, ranges, unknown and missing keys), then the relations between fields
 * (see model_config.h). Every message names the key as a dotted path, e.g. bart.d_model.
 */
#include "model_loader/model_config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "model_loader/json_util.h"
#include "model_loader/regular_file.h"

#define CONFIG_MAX_BYTES (1 << 20)

typedef enum {
    K_INT,     /* JSON integer in [lo, hi] → int */
    K_NUM,     /* JSON number in [lo, hi], or (lo, hi] with lo_open → float */
    K_BOOL,    /* true / false → int */
    K_TEXT,    /* non-empty string < DALLE_NAME_MAX bytes → char[DALLE_NAME_MAX] */
    K_FILE,    /* K_TEXT that is a plain name inside the model directory */
    K_PROSE,   /* non-empty string < DALLE_DESCRIPTION_MAX bytes, newlines allowed */
    K_PROMPTS, /* array of 1..DALLE_MODEL_MAX_EXAMPLES one-line strings < DALLE_EXAMPLE_MAX
                  bytes → examples, n_examples */
    K_JSON,    /* free-form object kept as compact JSON text → malloc'd char * */
    K_SECTION, /* object whose keys are the `sub` table */
    K_CHECKED, /* format, format_version: checked before the walk */
} cfg_kind;

typedef struct cfg_field {
    const char *key; /* NULL ends a table */
    cfg_kind kind;
    size_t off; /* destination in dalle_model_config */
    double lo, hi;
    int lo_open;
    int optional;
    const struct cfg_field *sub;
} cfg_field;

#define AT(m) offsetof(dalle_model_config, m)
#define INT(k, m, a, b)                                                                            \
    { .key = k, .kind = K_INT, .off = AT(m), .lo = a, .hi = b }
#define NUM(k, m, a, b, open)                                                                      \
    { .key = k, .kind = K_NUM, .off = AT(m), .lo = a, .hi = b, .lo_open = open }
#define FILENAME(k, m, opt)                                                                        \
    { .key = k, .kind = K_FILE, .off = AT(m), .optional = opt }

/* Upper bounds that depend on another field are checked in check_relations(). */
static const cfg_field BART[] = {
    INT("d_model", bart.d_model, 1, 16384),
    INT("encoder_layers", bart.encoder_layers, 1, 256),
    INT("decoder_layers", bart.decoder_layers, 1, 256),
    INT("attention_heads", bart.heads, 1, 16384),
    INT("glu_dim", bart.glu_dim, 1, 65536),
    INT("text_vocab_size", bart.text_vocab_size, 4, 1000000),
    INT("text_length", bart.text_length, 3, 2048),
    INT("image_vocab_size", bart.image_vocab_size, 1, 1000000),
    INT("image_length", bart.image_length, 1, 4096),
    INT("lm_head_size", bart.lm_head_size, 1, 1000000),
    INT("start_token", bart.start_token, 0, 1000000),
    NUM("layer_norm_eps", bart.layer_norm_eps, 0, 1e-1, 1),
    {.key = NULL},
};

static const cfg_field TEXT[] = {
    {.key = "normalize", .kind = K_BOOL, .off = AT(text.normalize)},
    INT("bos_token_id", text.bos_id, 0, 1000000),
    INT("pad_token_id", text.pad_id, 0, 1000000),
    INT("eos_token_id", text.eos_id, 0, 1000000),
    INT("unk_token_id", text.unk_id, 0, 1000000),
    {.key = NULL},
};

static const cfg_field GENERATION[] = {
    NUM("cond_scale", gen.cond_scale, 0, 1000, 0),
    INT("top_k", gen.top_k, 1, 1000000),
    NUM("top_p", gen.top_p, 0, 1, 1),
    NUM("temperature", gen.temperature, 0, 100, 1),
    {.key = NULL},
};

static const cfg_field FILES[] = {
    FILENAME("encoder", encoder_file, 0),
    FILENAME("decoder", decoder_file, 0),
    FILENAME("vocab", vocab_file, 0),
    FILENAME("merges", merges_file, 0),
    FILENAME("clip_merges", clip_merges_file, 1),
    FILENAME("wiki_words", wiki_words_file, 1),
    FILENAME("vqgan", vqgan_file, 1),
    FILENAME("clip", clip_file, 1),
    {.key = NULL},
};

static const cfg_field ROOT[] = {
    {.key = "format", .kind = K_CHECKED},
    {.key = "format_version", .kind = K_CHECKED},
    {.key = "name", .kind = K_TEXT, .off = AT(name)},
    {.key = "description", .kind = K_PROSE, .off = AT(description), .optional = 1},
    {.key = "examples", .kind = K_PROMPTS, .off = AT(examples), .optional = 1},
    {.key = "bart", .kind = K_SECTION, .sub = BART},
    {.key = "text", .kind = K_SECTION, .sub = TEXT},
    {.key = "generation", .kind = K_SECTION, .sub = GENERATION},
    {.key = "files", .kind = K_SECTION, .sub = FILES},
    {.key = "vqgan", .kind = K_JSON, .off = AT(vqgan_json), .optional = 1},
    {.key = "clip", .kind = K_JSON, .off = AT(clip_json), .optional = 1},
    {.key = NULL},
};

/* Version first: a newer file may have another schema, and this is the message to show. */
static dalle_status check_format(json_t *root, const char *label, dalle_error *err) {
    char found[64];
    json_t *f = json_object_get(root, "format"), *v = json_object_get(root, "format_version");
    const char *s = json_string_value(f);
    if (!s || strcmp(s, DALLE_CONFIG_FORMAT))
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: format: expected \"%s\", found %s",
                               label, DALLE_CONFIG_FORMAT,
                               dalle_json_describe(f, found, sizeof found));
    if (!json_is_integer(v))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: format_version: expected the integer %d, found %s", label,
                               DALLE_CONFIG_VERSION, dalle_json_describe(v, found, sizeof found));
    if (json_integer_value(v) != DALLE_CONFIG_VERSION)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: format_version %lld is not supported by this build (expected "
                               "%d); re-run tools/convert.py",
                               label, (long long)json_integer_value(v), DALLE_CONFIG_VERSION);
    return DALLE_OK;
}

/* A non-empty string below cap bytes without control characters ('\n' allowed with
 * newlines) into dst[cap]. */
static dalle_status read_text(json_t *v, char *dst, size_t cap, int newlines, const char *path,
                              const char *label, dalle_error *err) {
    char found[64];
    const char *s = json_string_value(v);
    size_t len = s ? json_string_length(v) : 0;
    int ok = s && len > 0 && len < cap;
    for (size_t i = 0; ok && i < len; i++)
        ok = ((unsigned char)s[i] >= 0x20 && s[i] != 0x7f) || (newlines && s[i] == '\n');
    if (!ok)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %s: expected a non-empty string of at most %zu bytes without "
                               "control characters%s, found %s",
                               label, path, cap - 1, newlines ? " (newlines allowed)" : "",
                               dalle_json_describe(v, found, sizeof found));
    memcpy(dst, s, len + 1);
    return DALLE_OK;
}

static dalle_status read_name(const cfg_field *f, json_t *v, char *dst, const char *path,
                              const char *label, dalle_error *err) {
    char found[64];
    dalle_status st = read_text(v, dst, DALLE_NAME_MAX, 0, path, label, err);
    if (st != DALLE_OK)
        return st;
    const char *s = dst;
    if (f->kind == K_FILE && (strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")))
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %s: expected a file name inside the model directory (no '/', "
                               "not . or ..), found %s",
                               label, path, dalle_json_describe(v, found, sizeof found));
    return DALLE_OK;
}

static dalle_status read_examples(dalle_model_config *cfg, json_t *v, const char *path,
                                  const char *label, dalle_error *err) {
    char found[64], item[112]; /* path[96] + "[15]" */
    const size_t n = json_array_size(v);
    if (json_is_array(v))
        snprintf(found, sizeof found, "an array of %zu", n);
    else
        dalle_json_describe(v, found, sizeof found);
    if (!json_is_array(v) || n < 1 || n > DALLE_MODEL_MAX_EXAMPLES)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: %s: expected an array of 1 to %d prompts, found %s", label,
                               path, DALLE_MODEL_MAX_EXAMPLES, found);
    for (size_t i = 0; i < n; i++) {
        snprintf(item, sizeof item, "%s[%zu]", path, i);
        dalle_status st = read_text(json_array_get(v, i), cfg->examples[i], DALLE_EXAMPLE_MAX, 0,
                                    item, label, err);
        if (st != DALLE_OK)
            return st;
    }
    cfg->n_examples = (int)n;
    return DALLE_OK;
}

static dalle_status walk(dalle_model_config *cfg, json_t *obj, const cfg_field *fields,
                         const char *prefix, const char *label, dalle_error *err);

static dalle_status read_field(dalle_model_config *cfg, const cfg_field *f, json_t *v,
                               const char *path, const char *label, dalle_error *err) {
    char found[64];
    char *dst = (char *)cfg + f->off;
    switch (f->kind) {
    case K_INT: {
        json_int_t x = json_integer_value(v);
        if (!json_is_integer(v) || x < f->lo || x > f->hi)
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: %s: expected an integer in [%lld, %lld], found %s", label,
                                   path, (long long)f->lo, (long long)f->hi,
                                   dalle_json_describe(v, found, sizeof found));
        *(int *)dst = (int)x;
        return DALLE_OK;
    }
    case K_NUM: {
        double x = json_number_value(v);
        /* (float)x > lo too: a positive double may round to 0 in float */
        int above = f->lo_open ? x > f->lo && (float)x > f->lo : x >= f->lo;
        if (!json_is_number(v) || !above || !(x <= f->hi))
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: %s: expected a number in %c%g, %g], found %s", label, path,
                                   f->lo_open ? '(' : '[', f->lo, f->hi,
                                   dalle_json_describe(v, found, sizeof found));
        *(float *)dst = (float)x;
        return DALLE_OK;
    }
    case K_BOOL:
        if (!json_is_boolean(v))
            return dalle_error_set(err, DALLE_ERR_FORMAT,
                                   "%s: %s: expected true or false, found %s", label, path,
                                   dalle_json_describe(v, found, sizeof found));
        *(int *)dst = json_is_true(v);
        return DALLE_OK;
    case K_TEXT:
    case K_FILE: return read_name(f, v, dst, path, label, err);
    case K_PROSE: return read_text(v, dst, DALLE_DESCRIPTION_MAX, 1, path, label, err);
    case K_PROMPTS: return read_examples(cfg, v, path, label, err);
    case K_JSON:
    case K_SECTION:
        if (!json_is_object(v))
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: %s: expected an object, found %s",
                                   label, path, dalle_json_describe(v, found, sizeof found));
        if (f->kind == K_SECTION) {
            char prefix[32]; /* sections nest one level: "bart." */
            snprintf(prefix, sizeof prefix, "%s.", f->key);
            return walk(cfg, v, f->sub, prefix, label, err);
        }
        if (!(*(char **)dst = json_dumps(v, JSON_COMPACT)))
            return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: %s: out of memory", label, path);
        return DALLE_OK;
    case K_CHECKED: return DALLE_OK;
    }
    return DALLE_OK;
}

/* Unknown keys first (a typo reads better than the "missing" it causes), then each field. */
static dalle_status walk(dalle_model_config *cfg, json_t *obj, const cfg_field *fields,
                         const char *prefix, const char *label, dalle_error *err) {
    char path[96], shown[64];
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const cfg_field *f = fields;
        while (f->key && strcmp(f->key, key))
            f++;
        if (!f->key)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: unknown key '%s%s'", label, prefix,
                                   dalle_json_printable(key, shown, sizeof shown));
    }
    for (const cfg_field *f = fields; f->key; f++) {
        snprintf(path, sizeof path, "%s%s", prefix, f->key);
        if (!(v = json_object_get(obj, f->key))) {
            if (f->optional || f->kind == K_CHECKED)
                continue;
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: missing key '%s'", label, path);
        }
        dalle_status s = read_field(cfg, f, v, path, label, err);
        if (s != DALLE_OK)
            return s;
    }
    return DALLE_OK;
}

static dalle_status check_relations(const dalle_model_config *c, const char *label,
                                    dalle_error *err) {
    const dalle_bart_hparams *b = &c->bart;
    if (b->d_model % b->heads)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: bart.attention_heads: %d does not divide bart.d_model %d",
                               label, b->heads, b->d_model);
    if (b->d_model / b->heads > 256)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: bart.attention_heads: head_dim = bart.d_model / %d = %d, at "
                               "most 256 supported",
                               label, b->heads, b->d_model / b->heads);
    if (b->lm_head_size < b->image_vocab_size)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: bart.lm_head_size: expected at least bart.image_vocab_size "
                               "(%d), found %d",
                               label, b->image_vocab_size, b->lm_head_size);
    if (b->start_token >= b->lm_head_size)
        return dalle_error_set(
            err, DALLE_ERR_FORMAT,
            "%s: bart.start_token: expected below bart.lm_head_size (%d), found %d", label,
            b->lm_head_size, b->start_token);
    const struct {
        const char *key;
        int id;
    } ids[] = {{"bos_token_id", c->text.bos_id},
               {"pad_token_id", c->text.pad_id},
               {"eos_token_id", c->text.eos_id},
               {"unk_token_id", c->text.unk_id}};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        if (ids[i].id >= b->text_vocab_size)
            return dalle_error_set(
                err, DALLE_ERR_FORMAT,
                "%s: text.%s: expected below bart.text_vocab_size (%d), found %d", label,
                ids[i].key, b->text_vocab_size, ids[i].id);
    if (c->gen.top_k > b->image_vocab_size)
        return dalle_error_set(err, DALLE_ERR_FORMAT,
                               "%s: generation.top_k: expected at most bart.image_vocab_size (%d), "
                               "found %d",
                               label, b->image_vocab_size, c->gen.top_k);
    return DALLE_OK;
}

dalle_status dalle_model_config_parse(dalle_model_config *cfg, const char *json, size_t n,
                                      const char *label, dalle_error *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!label)
        label = "config.json";
    json_t *root = dalle_json_parse_object(json, n, label, err);
    if (!root)
        return DALLE_ERR_FORMAT;
    dalle_status s = check_format(root, label, err);
    if (s == DALLE_OK)
        s = walk(cfg, root, ROOT, "", label, err);
    if (s == DALLE_OK)
        s = check_relations(cfg, label, err);
    json_decref(root);
    if (s != DALLE_OK)
        dalle_model_config_free(cfg);
    return s;
}

/* Every file config.json names is a regular file (or absent: its loader reports that), so
 * that no stage blocks opening a FIFO. */
static dalle_status check_files(const dalle_model_config *cfg, const char *dir, dalle_error *err) {
    for (const cfg_field *f = FILES; f->key; f++) {
        const char *name = (const char *)cfg + f->off;
        char path[PATH_MAX];
        if (!name[0])
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
            return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "model directory path too long");
        dalle_status s = dalle_regular_file_check(path, err);
        if (s != DALLE_OK)
            return s;
    }
    return DALLE_OK;
}

dalle_status dalle_model_config_load(dalle_model_config *cfg, const char *dir, dalle_error *err) {
    memset(cfg, 0, sizeof *cfg);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "model directory path too long");
    int fd;
    size_t size;
    dalle_status s = dalle_regular_file_open(path, &fd, &size, err);
    if (s != DALLE_OK)
        return s;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return dalle_error_set(err, DALLE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    int failed = ferror(f), read_errno = errno;
    fclose(f);
    if (failed)
        s = dalle_error_set(err, DALLE_ERR_IO, "%s: cannot read: %s", path, strerror(read_errno));
    else if (n > CONFIG_MAX_BYTES)
        s = dalle_error_set(err, DALLE_ERR_FORMAT, "%s: larger than the %d-byte limit", path,
                            CONFIG_MAX_BYTES);
    else
        s = dalle_model_config_parse(cfg, buf, n, path, err);
    free(buf);
    if (s == DALLE_OK)
        s = check_files(cfg, dir, err);
    if (s != DALLE_OK)
        dalle_model_config_free(cfg);
    return s;
}

void dalle_model_config_free(dalle_model_config *cfg) {
    if (!cfg)
        return;
    free(cfg->vqgan_json);
    free(cfg->clip_json);
    memset(cfg, 0, sizeof *cfg);
}
