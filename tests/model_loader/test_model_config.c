/* test_model_config.c — config.json validation: a valid file parses to the right values;
 * each rule has a just-inside and a just-outside case (one or two keys of the base config
 * mutated through jansson); missing and unknown keys; vqgan/clip kept as JSON; load() from
 * a temp directory.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_loader/model_config.h"

static const char BASE[] =
    "{\"format\": \"dalle-server-model\", \"format_version\": 1, \"name\": \"tiny-random\",\n"
    " \"bart\": {\"d_model\": 64, \"encoder_layers\": 2, \"decoder_layers\": 3,\n"
    "          \"attention_heads\": 4, \"glu_dim\": 96, \"text_vocab_size\": 4000,\n"
    "          \"text_length\": 64, \"image_vocab_size\": 16384, \"image_length\": 256,\n"
    "          \"lm_head_size\": 16385, \"start_token\": 16383, \"layer_norm_eps\": 1e-5},\n"
    " \"text\": {\"normalize\": true, \"bos_token_id\": 0, \"pad_token_id\": 1,\n"
    "          \"eos_token_id\": 2, \"unk_token_id\": 3},\n"
    " \"generation\": {\"cond_scale\": 10.0, \"top_k\": 50, \"top_p\": 0.9, \"temperature\": "
    "1.5},\n"
    " \"files\": {\"encoder\": \"encoder.safetensors\", \"decoder\": \"decoder.safetensors\",\n"
    "           \"vocab\": \"vocab.json\", \"merges\": \"merges.txt\",\n"
    "           \"clip_merges\": \"clip_merges.txt\", \"wiki_words\": \"words.txt\"}}\n";

static json_t *base(void) {
    json_error_t e;
    json_t *root = json_loads(BASE, 0, &e);
    cr_assert_not_null(root, "BASE: %s", e.text);
    return root;
}

/* Sets "section.key" (or a root "key") to the JSON text `value`; NULL deletes it. */
static void mutate(json_t *root, const char *path, const char *value) {
    char sec[64];
    const char *dot = strchr(path, '.');
    json_t *obj = root;
    if (dot) {
        snprintf(sec, sizeof sec, "%.*s", (int)(dot - path), path);
        obj = json_object_get(root, sec);
        cr_assert(json_is_object(obj), "no section %s", sec);
        path = dot + 1;
    }
    if (!value) {
        json_object_del(obj, path);
        return;
    }
    json_error_t e;
    json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    cr_assert_not_null(v, "value %s: %s", value, e.text);
    json_object_set_new(obj, path, v);
}

/* Serializes and parses root (consumed) with the label "config.json". */
static dalle_status parse_root(json_t *root, dalle_model_config *cfg, dalle_error *err) {
    char *text = json_dumps(root, 0);
    cr_assert_not_null(text);
    json_decref(root);
    dalle_status s = dalle_model_config_parse(cfg, text, strlen(text), "config.json", err);
    free(text);
    return s;
}

static void expect_error(json_t *root, const char *text) {
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(parse_root(root, &cfg, &err), DALLE_ERR_FORMAT, "expected an error with '%s'",
                 text);
    cr_assert(strncmp(err.msg, "config.json: ", 13) == 0, "%s", err.msg);
    cr_assert(strstr(err.msg, text), "message '%s' lacks '%s'", err.msg, text);
    cr_assert_null(strchr(err.msg, '\n'), "%s", err.msg);
    cr_assert_null(cfg.vqgan_json);
    dalle_model_config_free(&cfg);
}

Test(model_config, valid_config_values) {
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(parse_root(base(), &cfg, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(cfg.name, "tiny-random");
    const dalle_bart_hparams *b = &cfg.bart;
    cr_assert_eq(b->d_model, 64);
    cr_assert_eq(b->encoder_layers, 2);
    cr_assert_eq(b->decoder_layers, 3);
    cr_assert_eq(b->heads, 4);
    cr_assert_eq(b->glu_dim, 96);
    cr_assert_eq(b->text_vocab_size, 4000);
    cr_assert_eq(b->text_length, 64);
    cr_assert_eq(b->image_vocab_size, 16384);
    cr_assert_eq(b->image_length, 256);
    cr_assert_eq(b->lm_head_size, 16385);
    cr_assert_eq(b->start_token, 16383);
    cr_assert_eq(b->layer_norm_eps, 1e-5f);
    cr_assert_eq(cfg.text.normalize, 1);
    cr_assert_eq(cfg.text.bos_id, 0);
    cr_assert_eq(cfg.text.pad_id, 1);
    cr_assert_eq(cfg.text.eos_id, 2);
    cr_assert_eq(cfg.text.unk_id, 3);
    cr_assert_eq(cfg.gen.cond_scale, 10.0f);
    cr_assert_eq(cfg.gen.top_k, 50);
    cr_assert_eq(cfg.gen.top_p, 0.9f);
    cr_assert_eq(cfg.gen.temperature, 1.5f);
    cr_assert_str_eq(cfg.encoder_file, "encoder.safetensors");
    cr_assert_str_eq(cfg.decoder_file, "decoder.safetensors");
    cr_assert_str_eq(cfg.vocab_file, "vocab.json");
    cr_assert_str_eq(cfg.merges_file, "merges.txt");
    cr_assert_str_eq(cfg.clip_merges_file, "clip_merges.txt");
    cr_assert_str_eq(cfg.wiki_words_file, "words.txt");
    cr_assert_str_eq(cfg.vqgan_file, "");
    cr_assert_str_eq(cfg.clip_file, "");
    cr_assert_null(cfg.vqgan_json);
    cr_assert_null(cfg.clip_json);
    dalle_model_config_free(&cfg);
    dalle_model_config_free(&cfg);
}

Test(model_config, bytes_need_no_terminator) {
    size_t n = strlen(BASE);
    char *buf = malloc(n + 8);
    memcpy(buf, BASE, n);
    memcpy(buf + n, "garbage!", 8); /* past n: must not be read */
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_parse(&cfg, buf, n, "config.json", &err), DALLE_OK, "%s",
                 err.msg);
    dalle_model_config_free(&cfg);
    free(buf);
}

/* ---- one rule, one side of its bound ---- */

typedef struct {
    const char *key, *value;   /* mutation */
    const char *key2, *value2; /* optional second mutation that keeps other rules satisfied */
    int ok;
    const char *want; /* substring of the error; the key when NULL */
} rule_case;

#define X10     "xxxxxxxxxx"
#define X120    X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define NAME127 "\"" X120 "xxxxxxx\""
#define NAME128 "\"" X120 "xxxxxxxx\""

static const rule_case RULES[] = {
    {"bart.d_model", "1", "bart.attention_heads", "1", 1, NULL},
    {"bart.d_model", "0", NULL, NULL, 0,
     "bart.d_model: expected an integer in [1, 16384], found 0"},
    {"bart.d_model", "16384", "bart.attention_heads", "64", 1, NULL},
    {"bart.d_model", "16385", NULL, NULL, 0, NULL},
    {"bart.d_model", "64.0", NULL, NULL, 0,
     "bart.d_model: expected an integer in [1, 16384], found 64.0"},
    {"bart.d_model", "\"64\"", NULL, NULL, 0, "found \"64\""},
    {"bart.d_model", "true", NULL, NULL, 0,
     "bart.d_model: expected an integer in [1, 16384], found true"},
    {"bart.d_model", "null", NULL, NULL, 0, "found null"},
    {"bart.d_model", "[64]", NULL, NULL, 0, "found an array"},
    {"bart.encoder_layers", "1", NULL, NULL, 1, NULL},
    {"bart.encoder_layers", "0", NULL, NULL, 0, NULL},
    {"bart.encoder_layers", "256", NULL, NULL, 1, NULL},
    {"bart.encoder_layers", "257", NULL, NULL, 0, NULL},
    {"bart.decoder_layers", "1", NULL, NULL, 1, NULL},
    {"bart.decoder_layers", "0", NULL, NULL, 0, NULL},
    {"bart.decoder_layers", "256", NULL, NULL, 1, NULL},
    {"bart.decoder_layers", "257", NULL, NULL, 0, NULL},
    {"bart.attention_heads", "64", NULL, NULL, 1, NULL},
    {"bart.attention_heads", "0", NULL, NULL, 0, NULL},
    {"bart.attention_heads", "3", NULL, NULL, 0,
     "bart.attention_heads: 3 does not divide bart.d_model 64"},
    {"bart.d_model", "512", "bart.attention_heads", "2", 1, NULL},
    {"bart.d_model", "514", "bart.attention_heads", "2", 0,
     "bart.attention_heads: head_dim = bart.d_model / 2 = 257"},
    {"bart.glu_dim", "1", NULL, NULL, 1, NULL},
    {"bart.glu_dim", "0", NULL, NULL, 0, NULL},
    {"bart.glu_dim", "65536", NULL, NULL, 1, NULL},
    {"bart.glu_dim", "65537", NULL, NULL, 0, NULL},
    {"bart.text_vocab_size", "4", NULL, NULL, 1, NULL},
    {"bart.text_vocab_size", "3", NULL, NULL, 0, NULL},
    {"bart.text_vocab_size", "1000000", NULL, NULL, 1, NULL},
    {"bart.text_vocab_size", "1000001", NULL, NULL, 0, NULL},
    {"bart.text_length", "3", NULL, NULL, 1, NULL},
    {"bart.text_length", "2", NULL, NULL, 0, NULL},
    {"bart.text_length", "2048", NULL, NULL, 1, NULL},
    {"bart.text_length", "2049", NULL, NULL, 0, NULL},
    {"bart.image_vocab_size", "1", "generation.top_k", "1", 1, NULL},
    {"bart.image_vocab_size", "0", NULL, NULL, 0, NULL},
    {"bart.image_vocab_size", "1000000", "bart.lm_head_size", "1000000", 1, NULL},
    {"bart.image_vocab_size", "1000001", NULL, NULL, 0, NULL},
    {"bart.image_length", "1", NULL, NULL, 1, NULL},
    {"bart.image_length", "0", NULL, NULL, 0, NULL},
    {"bart.image_length", "4096", NULL, NULL, 1, NULL},
    {"bart.image_length", "4097", NULL, NULL, 0, NULL},
    {"bart.lm_head_size", "16384", NULL, NULL, 1, NULL},
    {"bart.lm_head_size", "16383", NULL, NULL, 0,
     "bart.lm_head_size: expected at least bart.image_vocab_size (16384), found 16383"},
    {"bart.lm_head_size", "1000000", NULL, NULL, 1, NULL},
    {"bart.lm_head_size", "1000001", NULL, NULL, 0, NULL},
    {"bart.start_token", "0", NULL, NULL, 1, NULL},
    {"bart.start_token", "-1", NULL, NULL, 0, NULL},
    {"bart.start_token", "16384", NULL, NULL, 1, NULL},
    {"bart.start_token", "16385", NULL, NULL, 0,
     "bart.start_token: expected below bart.lm_head_size (16385), found 16385"},
    {"bart.layer_norm_eps", "0.1", NULL, NULL, 1, NULL},
    {"bart.layer_norm_eps", "0.10000001", NULL, NULL, 0,
     "bart.layer_norm_eps: expected a number in (0, 0.1], found 0.10000001"},
    {"bart.layer_norm_eps", "1e-30", NULL, NULL, 1, NULL},
    {"bart.layer_norm_eps", "0", NULL, NULL, 0, NULL},
    {"bart.layer_norm_eps", "1e-50", NULL, NULL, 0, NULL}, /* 0 as a float */
    {"bart.layer_norm_eps", "-1e-5", NULL, NULL, 0, NULL},
    {"bart.layer_norm_eps", "\"1e-5\"", NULL, NULL, 0, NULL},
    {"text.normalize", "false", NULL, NULL, 1, NULL},
    {"text.normalize", "1", NULL, NULL, 0, "text.normalize: expected true or false, found 1"},
    {"text.normalize", "\"true\"", NULL, NULL, 0, NULL},
    {"text.bos_token_id", "3999", NULL, NULL, 1, NULL},
    {"text.bos_token_id", "4000", NULL, NULL, 0,
     "text.bos_token_id: expected below bart.text_vocab_size (4000), found 4000"},
    {"text.bos_token_id", "-1", NULL, NULL, 0, NULL},
    {"text.bos_token_id", "0.0", NULL, NULL, 0, NULL},
    {"text.pad_token_id", "3999", NULL, NULL, 1, NULL},
    {"text.pad_token_id", "4000", NULL, NULL, 0, NULL},
    {"text.eos_token_id", "3999", NULL, NULL, 1, NULL},
    {"text.eos_token_id", "4000", NULL, NULL, 0, NULL},
    {"text.unk_token_id", "3999", NULL, NULL, 1, NULL},
    {"text.unk_token_id", "4000", NULL, NULL, 0, NULL},
    {"generation.cond_scale", "0", NULL, NULL, 1, NULL},
    {"generation.cond_scale", "-0.001", NULL, NULL, 0,
     "generation.cond_scale: expected a number in [0, 1000], found -0.001"},
    {"generation.cond_scale", "1000", NULL, NULL, 1, NULL},
    {"generation.cond_scale", "1000.001", NULL, NULL, 0, NULL},
    {"generation.cond_scale", "\"10\"", NULL, NULL, 0, NULL},
    {"generation.temperature", "1e-6", NULL, NULL, 1, NULL},
    {"generation.temperature", "0", NULL, NULL, 0,
     "generation.temperature: expected a number in (0, 100]"},
    {"generation.temperature", "100", NULL, NULL, 1, NULL},
    {"generation.temperature", "100.001", NULL, NULL, 0, NULL},
    {"generation.top_p", "1e-6", NULL, NULL, 1, NULL},
    {"generation.top_p", "0", NULL, NULL, 0, NULL},
    {"generation.top_p", "1", NULL, NULL, 1, NULL},
    {"generation.top_p", "1.0001", NULL, NULL, 0, NULL},
    {"generation.top_k", "1", NULL, NULL, 1, NULL},
    {"generation.top_k", "0", NULL, NULL, 0, NULL},
    {"generation.top_k", "16384", NULL, NULL, 1, NULL},
    {"generation.top_k", "16385", NULL, NULL, 0,
     "generation.top_k: expected at most bart.image_vocab_size (16384), found 16385"},
    {"generation.top_k", "50.0", NULL, NULL, 0, NULL},
    {"format", "\"dalle\"", NULL, NULL, 0,
     "format: expected \"dalle-server-model\", found \"dalle\""},
    {"format", NULL, NULL, NULL, 0, "format: expected \"dalle-server-model\", found nothing"},
    {"format_version", "2", NULL, NULL, 0,
     "config.json: format_version 2 is not supported by this build (expected 1); re-run "
     "tools/convert.py"},
    {"format_version", "0", NULL, NULL, 0, "format_version 0 is not supported"},
    {"format_version", "\"1\"", NULL, NULL, 0,
     "format_version: expected the integer 1, found \"1\""},
    {"format_version", "1.0", NULL, NULL, 0, "found 1.0"},
    {"format_version", NULL, NULL, NULL, 0,
     "format_version: expected the integer 1, found nothing"},
    {"name", NAME127, NULL, NULL, 1, NULL},
    {"name", NAME128, NULL, NULL, 0, "name: expected a non-empty string of at most 127 bytes"},
    {"name", "\"\"", NULL, NULL, 0, NULL},
    {"name", "5", NULL, NULL, 0, NULL},
    {"files.encoder", "\"..x\"", NULL, NULL, 1, NULL},
    {"files.encoder", NAME127, NULL, NULL, 1, NULL},
    {"files.encoder", NAME128, NULL, NULL, 0, NULL},
    {"files.encoder", "\"\"", NULL, NULL, 0, NULL},
    {"files.encoder", "\"sub/encoder.safetensors\"", NULL, NULL, 0,
     "files.encoder: expected a file name inside the model directory"},
    {"files.decoder", "\"/etc/passwd\"", NULL, NULL, 0, NULL},
    {"files.vocab", "\".\"", NULL, NULL, 0, NULL},
    {"files.merges", "\"..\"", NULL, NULL, 0,
     "files.merges: expected a file name inside the model directory (no '/', not . or ..), found "
     "\"..\""},
    {"files.merges", "\"a\\u0001b\"", NULL, NULL, 0, NULL},
    {"files.merges", "\"a\\u0000b\"", NULL, NULL, 0, "not valid JSON"},
    {"files.merges", "7", NULL, NULL, 0, NULL},
    {"files.clip_merges", NULL, NULL, NULL, 1, NULL},
    {"files.wiki_words", NULL, NULL, NULL, 1, NULL},
    {"files.vqgan", "\"vqgan.safetensors\"", "files.clip", "\"clip.safetensors\"", 1, NULL},
    {"files.vqgan", "5", NULL, NULL, 0, NULL},
    {"files.clip", "\"../clip.safetensors\"", NULL, NULL, 0, NULL},
    {"foo", "1", NULL, NULL, 0, "config.json: unknown key 'foo'"},
    {"bart.dmodel", "64", NULL, NULL, 0, "unknown key 'bart.dmodel'"},
    {"text.foo", "1", NULL, NULL, 0, "unknown key 'text.foo'"},
    {"generation.top-k", "1", NULL, NULL, 0, "unknown key 'generation.top-k'"},
    {"files.tokenizer", "\"t.json\"", NULL, NULL, 0, "unknown key 'files.tokenizer'"},
    {"bart", "[]", NULL, NULL, 0, "bart: expected an object, found an array"},
    {"files", "\"x\"", NULL, NULL, 0, "files: expected an object, found \"x\""},
    {"vqgan", "[1]", NULL, NULL, 0, "vqgan: expected an object, found an array"},
    {"clip", "\"x\"", NULL, NULL, 0, "clip: expected an object"},
    {"vqgan", "{}", "clip", "{}", 1, NULL},
    {"description", "\"two lines\\nof prose\"", NULL, NULL, 1, NULL},
    {"description", "\"\"", NULL, NULL, 0,
     "description: expected a non-empty string of at most 2047 bytes without control "
     "characters (newlines allowed), found \"\""},
    {"description", "\"a\\tb\"", NULL, NULL, 0, "description: expected"},
    {"description", "[\"a\"]", NULL, NULL, 0, "description: expected a non-empty string"},
    {"examples", "[\"a red square\"]", NULL, NULL, 1, NULL},
    {"examples", "[]", NULL, NULL, 0,
     "examples: expected an array of 1 to 16 prompts, found an array of 0"},
    {"examples", "\"a red square\"", NULL, NULL, 0, "examples: expected an array"},
    {"examples", "[\"a\", \"\"]", NULL, NULL, 0,
     "examples[1]: expected a non-empty string of at most 255 bytes without control "
     "characters, found \"\""},
    {"examples", "[\"a\\nb\"]", NULL, NULL, 0, "examples[0]: expected"},
    {"examples", "[1]", NULL, NULL, 0, "examples[0]: expected a non-empty string"},
};

#define N_RULES (sizeof RULES / sizeof *RULES)

/* Indexes, not the cases: a test worker may be a fresh process where pointers differ. */
ParameterizedTestParameters(model_config, rule) {
    static size_t index[N_RULES];
    for (size_t i = 0; i < N_RULES; i++)
        index[i] = i;
    return cr_make_param_array(size_t, index, N_RULES);
}

ParameterizedTest(size_t *i, model_config, rule) {
    const rule_case *c = &RULES[*i];
    json_t *root = base();
    mutate(root, c->key, c->value);
    if (c->key2)
        mutate(root, c->key2, c->value2);
    dalle_model_config cfg;
    dalle_error err = {0};
    dalle_status s = parse_root(root, &cfg, &err);
    const char *want = c->want ? c->want : c->key;
    if (c->ok) {
        cr_assert_eq(s, DALLE_OK, "%s = %s: %s", c->key, c->value ? c->value : "(deleted)",
                     err.msg);
    } else {
        cr_assert_eq(s, DALLE_ERR_FORMAT, "%s = %s was accepted", c->key,
                     c->value ? c->value : "(deleted)");
        cr_assert(strncmp(err.msg, "config.json: ", 13) == 0, "%s", err.msg);
        cr_assert(strstr(err.msg, want), "%s = %s: message '%s' lacks '%s'", c->key,
                  c->value ? c->value : "(deleted)", err.msg, want);
    }
    dalle_model_config_free(&cfg);
}

Test(model_config, every_required_key_is_required) {
    static const char *const optional[] = {"files.clip_merges", "files.wiki_words"};
    json_t *ref = base();
    const char *sec;
    json_t *sv;
    json_object_foreach(ref, sec, sv) {
        if (strncmp(sec, "format", 6)) { /* format keys have their own messages (rule cases) */
            json_t *root = base();
            mutate(root, sec, NULL);
            char want[96];
            snprintf(want, sizeof want, "missing key '%s'", sec);
            expect_error(root, want);
        }
        if (!json_is_object(sv))
            continue;
        const char *key;
        json_t *kv;
        json_object_foreach(sv, key, kv) {
            char path[96];
            snprintf(path, sizeof path, "%s.%s", sec, key);
            int opt = 0;
            for (size_t i = 0; i < sizeof optional / sizeof *optional; i++)
                opt |= !strcmp(path, optional[i]);
            if (opt)
                continue;
            json_t *root = base();
            mutate(root, path, NULL);
            char want[128];
            snprintf(want, sizeof want, "config.json: missing key '%s'", path);
            expect_error(root, want);
        }
    }
    json_decref(ref);
}

Test(model_config, vqgan_and_clip_sections_are_kept) {
    static const char vq[] =
        "{\"embed_dim\": 256, \"ch_mult\": [1, 1, 2, 2, 4], \"any\": {\"thing\": null}}";
    static const char cl[] = "{\"image_size\": 224, \"whatever\": \"goes\"}";
    json_t *root = base();
    mutate(root, "vqgan", vq);
    mutate(root, "clip", cl);
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(parse_root(root, &cfg, &err), DALLE_OK, "%s", err.msg);
    cr_assert_not_null(cfg.vqgan_json);
    cr_assert_not_null(cfg.clip_json);
    json_t *a = json_loads(cfg.vqgan_json, 0, NULL), *b = json_loads(vq, 0, NULL);
    cr_assert(json_equal(a, b), "vqgan kept as %s", cfg.vqgan_json);
    json_decref(a);
    json_decref(b);
    a = json_loads(cfg.clip_json, 0, NULL);
    b = json_loads(cl, 0, NULL);
    cr_assert(json_equal(a, b), "clip kept as %s", cfg.clip_json);
    json_decref(a);
    json_decref(b);
    dalle_model_config_free(&cfg);
    cr_assert_null(cfg.vqgan_json);
    dalle_model_config_free(&cfg);
}

Test(model_config, malformed_documents) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "config.json: not valid JSON"},
        {"{", "not valid JSON"},
        {"[]", "config.json: expected a JSON object, found an array"},
        {"{\"format\": \"dalle-server-model\", \"format\": \"dalle-server-model\"}", "duplicate"},
        {"{\"bart\": {}}", "format: expected"},
        {"{\"a\": \"x\\\n\"}", "invalid escape near '\"x\\?'"}, /* one line */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dalle_model_config cfg;
        dalle_error err = {0};
        cr_assert_eq(dalle_model_config_parse(&cfg, cases[i].text, strlen(cases[i].text),
                                              "config.json", &err),
                     DALLE_ERR_FORMAT, "'%s' accepted", cases[i].text);
        cr_assert(strstr(err.msg, cases[i].want), "'%s': %s", cases[i].text, err.msg);
        cr_assert_null(strchr(err.msg, '\n'), "%s", err.msg);
        dalle_model_config_free(&cfg);
    }
    /* a duplicate inside a section */
    const char *dup = strstr(BASE, "\"glu_dim\"");
    char *text = malloc(sizeof BASE + 32);
    snprintf(text, sizeof BASE + 32, "%.*s\"glu_dim\": 96, %s", (int)(dup - BASE), BASE, dup);
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_parse(&cfg, text, strlen(text), "config.json", &err),
                 DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, "duplicate"), "%s", err.msg);
    free(text);
}

/* A string of n 'x' as JSON text, malloc'ed. */
static char *json_x(size_t n) {
    char *t = malloc(n + 3);
    t[0] = '"';
    memset(t + 1, 'x', n);
    memcpy(t + 1 + n, "\"", 2);
    return t;
}

/* description and examples: kept as given, each at its limit and one past it. */
Test(model_config, description_and_examples_limits) {
    json_t *root = base();
    mutate(root, "description", "\"Draws shapes.\\nColours: red, blue.\"");
    mutate(root, "examples", "[\"a red square\", \"a blue circle on the left\"]");
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(parse_root(root, &cfg, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(cfg.description, "Draws shapes.\nColours: red, blue.");
    cr_assert_eq(cfg.n_examples, 2);
    cr_assert_str_eq(cfg.examples[0], "a red square");
    cr_assert_str_eq(cfg.examples[1], "a blue circle on the left");
    dalle_model_config_free(&cfg);
    cr_assert_eq(parse_root(base(), &cfg, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(cfg.description, "");
    cr_assert_eq(cfg.n_examples, 0);
    dalle_model_config_free(&cfg);

    for (int past = 0; past <= 1; past++) {
        char *d = json_x(DALLE_DESCRIPTION_MAX - 1 + (size_t)past);
        root = base();
        mutate(root, "description", d);
        free(d);
        if (past) {
            expect_error(root, "description: expected a non-empty string of at most 2047 bytes");
        } else {
            cr_assert_eq(parse_root(root, &cfg, &err), DALLE_OK, "%s", err.msg);
            cr_assert_eq(strlen(cfg.description), DALLE_DESCRIPTION_MAX - 1);
            dalle_model_config_free(&cfg);
        }
        char *x = json_x(DALLE_EXAMPLE_MAX - 1 + (size_t)past);
        root = base();
        json_t *a = json_array();
        for (int i = 0; i < DALLE_MODEL_MAX_EXAMPLES + past; i++)
            json_array_append_new(a, json_loads(x, JSON_DECODE_ANY, NULL));
        free(x);
        json_object_set_new(root, "examples", a);
        if (past) {
            expect_error(root, "examples: expected an array of 1 to 16 prompts, found an array "
                               "of 17");
        } else {
            cr_assert_eq(parse_root(root, &cfg, &err), DALLE_OK, "%s", err.msg);
            cr_assert_eq(cfg.n_examples, DALLE_MODEL_MAX_EXAMPLES);
            cr_assert_eq(strlen(cfg.examples[DALLE_MODEL_MAX_EXAMPLES - 1]), DALLE_EXAMPLE_MAX - 1);
            dalle_model_config_free(&cfg);
        }
    }
    char *x = json_x(DALLE_EXAMPLE_MAX);
    char arr[DALLE_EXAMPLE_MAX + 8];
    snprintf(arr, sizeof arr, "[%s]", x);
    free(x);
    root = base();
    mutate(root, "examples", arr);
    expect_error(root, "examples[0]: expected a non-empty string of at most 255 bytes");
}

Test(model_config, free_is_safe_on_zeroed) {
    dalle_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    dalle_model_config_free(&cfg);
    dalle_model_config_free(&cfg);
    dalle_model_config_free(NULL);
}

/* ---- load() ---- */

static char dir[64];

static void make_dir(void) {
    strcpy(dir, "/tmp/dalle_cfg_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* DIR/config.json: BASE then `pad` spaces. */
static void write_config(size_t pad) {
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(BASE, 1, strlen(BASE), f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fclose(f);
}

static void remove_dir(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    rmdir(dir);
}

Test(model_config_load, from_a_directory) {
    make_dir();
    write_config(0);
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_OK, "%s", err.msg);
    cr_assert_str_eq(cfg.name, "tiny-random");
    cr_assert_eq(cfg.bart.lm_head_size, 16385);
    dalle_model_config_free(&cfg);
    remove_dir();
}

Test(model_config_load, size_limit_is_one_mib) {
    make_dir();
    write_config((1u << 20) - strlen(BASE)); /* exactly 1 MiB */
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_OK, "%s", err.msg);
    dalle_model_config_free(&cfg);
    write_config((1u << 20) - strlen(BASE) + 1);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_FORMAT);
    cr_assert(strstr(err.msg, "/config.json: larger than the 1048576-byte limit"), "%s", err.msg);
    remove_dir();
}

Test(model_config_load, errors_name_the_path) {
    make_dir();
    dalle_model_config cfg;
    dalle_error err = {0};
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_IO);
    char want[128];
    snprintf(want, sizeof want, "%s/config.json: cannot open: No such file", dir);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    dalle_model_config_free(&cfg);

    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fputs("{\"format\": \"dalle-server-model\", \"format_version\": 2}", f);
    fclose(f);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_FORMAT);
    snprintf(want, sizeof want, "%s/config.json: format_version 2 is not supported", dir);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    remove(path);

    cr_assert_eq(mkdir(path, 0700), 0);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_IO);
    cr_assert(strstr(err.msg, "/config.json: not a regular file (a directory)"), "%s", err.msg);
    rmdir(path);
    rmdir(dir);
}

/* A FIFO would block the loader forever (no writer): refused at once, as config.json and
 * as any file config.json names; a device likewise. */
Test(model_config_load, fifo_and_device_are_refused, .timeout = 10) {
    make_dir();
    dalle_model_config cfg;
    dalle_error err = {0};
    char path[128], want[192];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_IO);
    snprintf(want, sizeof want, "%s: not a regular file (a FIFO)", path);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    remove(path);

    write_config(0);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_IO);
    snprintf(want, sizeof want, "%s: not a regular file (a FIFO)", path);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    cr_assert_str_empty(cfg.name); /* left zeroed */
    remove(path);

    snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
    cr_assert_eq(symlink("/dev/zero", path), 0);
    cr_assert_eq(dalle_model_config_load(&cfg, dir, &err), DALLE_ERR_IO);
    cr_assert(strstr(err.msg, "encoder.safetensors: not a regular file (a character device)"), "%s",
              err.msg);
    remove(path);
    remove_dir();
}
