/* dalle_cli.c — command-line client of the engine; other tools check each stage through
 * it, so its commands and JSON output are a stable interface:
 *
 *   dalle-cli tokenize --model DIR --prompt P
 *       → {"normalized": s, "ids": [..], "mask": [..], "clip_ids": [..]}
 *   dalle-cli tokens --model DIR --prompt P [-n N] [--seed S] [--top-k K] [--top-p P]
 *                    [--temperature T] [--cond-scale C] [--threads N]
 *       → {"seed": S, "tokens": [[image_length ints], …], "timings_ms": {…}}
 *
 * Bad arguments: one line on stderr and exit status 2. Engine errors: one line, exit 1.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "dalle.h"

#define EXIT_USAGE 2

static const char *USAGE =
    "usage: dalle-cli COMMAND [options]\n"
    "commands:\n"
    "  tokenize --model DIR --prompt P     normalized text, BART ids and mask, CLIP ids (JSON)\n"
    "  tokens   --model DIR --prompt P     generate image codes (JSON)\n"
    "           [-n N] [--seed S] [--top-k K] [--top-p P] [--temperature T]\n"
    "           [--cond-scale C] [--threads N]\n"
    "options:\n"
    "  --model DIR       model directory (config.json, weights, tokenizer files)\n"
    "  --prompt P        UTF-8 prompt, at most 4096 bytes\n"
    "  -n N              images to generate, 1..64 (default 1)\n"
    "  --seed S          0..2^63-1 (default: random, printed in the output)\n"
    "  --top-k K         keep the K most likely codes, 1..image_vocab_size (default: config)\n"
    "  --top-p P         nucleus sampling, (0, 1] (default: config)\n"
    "  --temperature T   (0, 100] (default: config)\n"
    "  --cond-scale C    classifier-free guidance scale, [0, 1000] (default: config)\n"
    "  --threads N       CPU threads, 0 = all cores (default 0)\n"
    "  -h, --help        this text\n";

#define MAX_IMAGES 64

typedef struct {
    const char *command, *model, *prompt;
    long n, threads;
    uint64_t seed;
    int has_seed, has_top_k, has_top_p, has_temp, has_cond;
    long top_k;
    double top_p, temperature, cond_scale;
} cli_args;

static int usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "dalle-cli: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+' || *s == ' ') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > (unsigned long long)INT64_MAX) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Returns 0, or an exit status to stop with (usage error, or -1 for --help). */
static int parse_args(int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->n = 1;
    if (argc < 2) return usage_error("missing command%s%s", "", "");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) return -1;
    a->command = argv[1];
    if (strcmp(a->command, "tokenize") && strcmp(a->command, "tokens"))
        return usage_error("unknown command '%s'%s", a->command, "");
    const int gen = !strcmp(a->command, "tokens");
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) return -1;
        if (i + 1 >= argc) return usage_error("option '%s' needs a value%s", o, "");
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (gen && !strcmp(o, "-n")) bad = parse_long(v, 1, MAX_IMAGES, &a->n);
        else if (gen && !strcmp(o, "--seed")) bad = parse_u64(v, &a->seed), a->has_seed = 1;
        else if (gen && !strcmp(o, "--top-k")) bad = parse_long(v, 1, 1 << 30, &a->top_k), a->has_top_k = 1;
        else if (gen && !strcmp(o, "--top-p")) bad = parse_double(v, &a->top_p), a->has_top_p = 1;
        else if (gen && !strcmp(o, "--temperature")) bad = parse_double(v, &a->temperature), a->has_temp = 1;
        else if (gen && !strcmp(o, "--cond-scale")) bad = parse_double(v, &a->cond_scale), a->has_cond = 1;
        else if (gen && !strcmp(o, "--threads")) bad = parse_long(v, 0, 1024, &a->threads);
        else return usage_error("unknown option '%s' for '%s'", o, a->command);
        if (bad) return usage_error("bad value '%s' for %s", v, o);
    }
    if (!a->model) return usage_error("--model DIR is required%s%s", "", "");
    if (!a->prompt) return usage_error("--prompt P is required%s%s", "", "");
    return 0;
}

static json_t *int_array(const int32_t *v, int n) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(arr, json_integer(v[i]));
    return arr;
}

static int print_json(json_t *root) {
    int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 ? 0 : 1;
    fputc('\n', stdout);
    json_decref(root);
    return rc;
}

static int cmd_tokenize(dalle_model *m, const cli_args *a) {
    dalle_text t;
    dalle_error err = {0};
    if (dalle_text_encode(m, a->prompt, strlen(a->prompt), &t, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-cli: %s\n", err.msg);
        return err.status == DALLE_ERR_INVALID_ARG ? EXIT_USAGE : 1;
    }
    int32_t mask[4096];
    for (int i = 0; i < t.text_length; i++) mask[i] = t.mask[i];
    json_t *root = json_object();
    json_object_set_new(root, "normalized", json_string(t.normalized));
    json_object_set_new(root, "ids", int_array(t.ids, t.text_length));
    json_object_set_new(root, "mask", int_array(mask, t.text_length));
    json_object_set_new(root, "clip_ids", int_array(t.clip_ids, t.n_clip));
    dalle_text_free(&t);
    return print_json(root);
}

static int cmd_tokens(dalle_model *m, const cli_args *a) {
    dalle_gen_params p;
    dalle_gen_params_default(m, &p);
    p.n_images = (int)a->n;
    if (a->has_seed) p.seed = a->seed;
    else if (getrandom(&p.seed, sizeof p.seed, 0) != sizeof p.seed) p.seed = (uint64_t)time(NULL);
    p.seed &= (uint64_t)INT64_MAX;  // seeds are 0..2^63-1 (JSON integers are signed)
    if (a->has_top_k) p.top_k = (int)a->top_k;
    if (a->has_top_p) p.top_p = (float)a->top_p;
    if (a->has_temp) p.temperature = (float)a->temperature;
    if (a->has_cond) p.cond_scale = (float)a->cond_scale;

    dalle_error err = {0};
    if (dalle_gen_params_check(m, &p, MAX_IMAGES, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-cli: %s\n", err.msg);
        return EXIT_USAGE;
    }
    dalle_model_info info;
    dalle_model_get_info(m, &info);
    dalle_state *s;
    dalle_state_params sp = {.max_images = p.n_images};
    if (dalle_state_new(&s, m, &sp, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-cli: %s\n", err.msg);
        return 1;
    }
    int32_t *codes = malloc((size_t)p.n_images * info.image_length * sizeof *codes);
    dalle_timings tm;
    int rc = 0;
    if (!codes) {
        fprintf(stderr, "dalle-cli: out of memory\n");
        rc = 1;
    } else if (dalle_generate_codes(s, a->prompt, strlen(a->prompt), &p, codes, &tm, &err) !=
               DALLE_OK) {
        fprintf(stderr, "dalle-cli: %s\n", err.msg);
        rc = err.status == DALLE_ERR_INVALID_ARG ? EXIT_USAGE : 1;
    } else {
        json_t *root = json_object(), *tokens = json_array(), *t = json_object();
        json_object_set_new(root, "seed", json_integer((json_int_t)p.seed));
        for (int i = 0; i < p.n_images; i++)
            json_array_append_new(tokens, int_array(codes + (size_t)i * info.image_length,
                                                    info.image_length));
        json_object_set_new(root, "tokens", tokens);
        json_object_set_new(t, "text", json_real(tm.text_ms));
        json_object_set_new(t, "encode", json_real(tm.encode_ms));
        json_object_set_new(t, "decode", json_real(tm.decode_ms));
        json_object_set_new(root, "timings_ms", t);
        rc = print_json(root);
    }
    free(codes);
    dalle_state_free(s);
    return rc;
}

int main(int argc, char **argv) {
    cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc == -1) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (rc) return rc;
    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.threads = (int)a.threads;
    dalle_model *m;
    dalle_error err = {0};
    if (dalle_model_load(&m, a.model, &mp, &err) != DALLE_OK) {
        fprintf(stderr, "dalle-cli: %s\n", err.msg);
        return 1;
    }
    rc = !strcmp(a.command, "tokenize") ? cmd_tokenize(m, &a) : cmd_tokens(m, &a);
    dalle_model_free(m);
    return rc;
}
