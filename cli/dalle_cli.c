/* dalle_cli.c — command-line client of the engine; other tools check each stage through
 * it, so its commands and JSON output are a stable interface:
 *
 *   tokenize --model DIR --prompt P        → {"normalized", "ids", "mask", "clip_ids"}
 *   tokens   --model DIR --prompt P [gen]  → {"seed", "tokens": [[256 ints], …], "timings_ms"}
 *   generate --model DIR --prompt P [gen] [out] --out DIR
 *            → DIR/0.jpg … DIR/{N-1}.jpg best first, DIR/result.json
 *   decode   --model DIR --tokens FILE.json [out] --out DIR → DIR/{i}.jpg for each code grid
 *   rank     --model DIR --prompt P IMAGE.jpg…            → {"scores", "order"}
 *
 * Bad arguments or input: one line on stderr and exit status 2. Engine errors: exit 1.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>

#include "common/install_dir.h"
#include "common/jpeg.h"
#include "common/version.h"
#include "dalle.h"

#define EXIT_USAGE      2
#define MAX_IMAGES      64 /* -n, and the code grids of one decode */
#define STR_(x)         #x
#define STR(x)          STR_(x) /* a limit of dalle.h or of this file as text */
#define MAX_RANK_IMAGES 256
#define MAX_FILE_BYTES  (64 << 20)

static const char *USAGE =
    "usage: dalle-cli COMMAND [options]\n"
    "commands:\n"
    "  tokenize --model DIR --prompt P         normalized text, BART ids and mask, CLIP ids "
    "(JSON)\n"
    "  tokens   --model DIR --prompt P [gen]   image codes (JSON)\n"
    "  generate --model DIR --prompt P [gen] [jpeg] --out DIR\n"
    "                                          ranked JPEGs DIR/0.jpg… and DIR/result.json\n"
    "  decode   --model DIR --tokens FILE [jpeg] --out DIR\n"
    "                                          the code grids of FILE ({\"tokens\": [[…]]}) → "
    "DIR/i.jpg\n"
    "  rank     --model DIR --prompt P IMAGE.jpg…  CLIP scores and order (JSON)\n"
    "options:\n"
    "  --model DIR         model directory (config.json, weights, tokenizer files; default: the\n"
    "                      bundled demo model, PREFIX/share/dalle-server/models/demo of an "
    "installed\n"
    "                      dalle-cli, models/demo of the checkout for build/dalle-cli)\n"
    // clang-format off
    "  --prompt P          UTF-8 prompt, at most " STR(DALLE_MAX_PROMPT_BYTES) " bytes\n"
    "  --threads N         CPU threads, 0 = all cores (default 0)\n"
    "  --backend B         cpu or cuda (default cpu; cuda weights: DALLE_CUDA_WEIGHTS=f32|f16|bf16;\n"
    "                      cpu GEMM: the fastest this CPU runs, or DALLE_CPU_GEMM=avx512|avx2|portable)\n"
    "gen:\n"
    "  -n N                images, 1.." STR(MAX_IMAGES) " (default 1)\n"
    "  --seed S            0..2^63-1 (default: random, printed in the output)\n"
    "  --top-k K           keep the K most likely codes, " STR(DALLE_TOP_K_MIN) "..image codes (default: config)\n"
    "  --top-p P           nucleus sampling, (0, " STR(DALLE_TOP_P_MAX) "] (default: config)\n"
    "  --temperature T     (0, " STR(DALLE_TEMPERATURE_MAX) "] (default: config)\n"
    "  --cond-scale C      classifier-free guidance scale, [" STR(DALLE_COND_SCALE_MIN) ", " STR(DALLE_COND_SCALE_MAX) "] (default: config)\n"
    "jpeg:\n"
    "  --quality Q         JPEG quality " STR(DALLE_QUALITY_MIN) ".." STR(DALLE_QUALITY_MAX) " (default 90)\n"
    "  --subsampling S     444, 422 or 420 (default 444 below 256×256 pixels, else 420)\n"
    "  --no-rank           generate: keep generation order, skip CLIP\n"
    "  -h, --help          this text\n"
    "  --version           version, git describe and the backends built in\n";
// clang-format on

typedef struct {
    const char *command, *model, *prompt, *out, *tokens, *backend;
    long n, threads, top_k, quality, subsampling; /* subsampling 0: the library default */
    uint64_t seed;
    int has_seed, has_top_k, has_top_p, has_temp, has_cond, no_rank;
    char demo_dir[PATH_MAX]; /* the bundled demo model, when no --model is given */
    double top_p, temperature, cond_scale;
    const char **images;
    int n_images;
} cli_args;

static int fail(int status, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "dalle-cli: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, status == EXIT_USAGE ? " (try --help)\n" : "\n");
    return status;
}

static int engine_error(const dalle_error *err) {
    fprintf(stderr, "dalle-cli: %s\n", err->msg);
    return err->status == DALLE_ERR_INVALID_ARG ? EXIT_USAGE : 1;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > (unsigned long long)INT64_MAX)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int is(const char *a, const char *b) {
    return strcmp(a, b) == 0;
}

/* Returns 0, an exit status (usage error), -1 for --help or -2 for --version. */
static int parse_args(int argc, char **argv, cli_args *a) {
    static const char *COMMANDS[] = {"tokenize", "tokens", "generate", "decode", "rank"};
    memset(a, 0, sizeof *a);
    a->n = 1;
    a->quality = 90;
    if (argc < 2)
        return fail(EXIT_USAGE, "missing command%s%s", "", "");
    if (is(argv[1], "-h") || is(argv[1], "--help"))
        return -1;
    if (is(argv[1], "--version"))
        return -2;
    a->command = argv[1];
    int known = 0;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        known |= is(a->command, COMMANDS[i]);
    if (!known)
        return fail(EXIT_USAGE, "unknown command '%s'%s", a->command, "");
    const int gen = is(a->command, "tokens") || is(a->command, "generate");
    const int jpeg = is(a->command, "generate") || is(a->command, "decode");
    a->images = calloc((size_t)argc, sizeof *a->images);
    if (!a->images)
        return fail(1, "out of memory%s%s", "", "");
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (is(o, "-h") || is(o, "--help"))
            return -1;
        if (is(a->command, "rank") && o[0] != '-') {
            a->images[a->n_images++] = o;
            continue;
        }
        if (is(o, "--no-rank") && is(a->command, "generate")) {
            a->no_rank = 1;
            continue;
        }
        if (i + 1 >= argc)
            return fail(EXIT_USAGE, "option '%s' needs a value%s", o, "");
        const char *v = argv[++i];
        int bad = 0;
        if (is(o, "--model"))
            a->model = v;
        else if (is(o, "--prompt") && !is(a->command, "decode"))
            a->prompt = v;
        else if (is(o, "--threads"))
            bad = parse_long(v, 0, 1024, &a->threads);
        else if (is(o, "--backend"))
            a->backend = v;
        else if (is(o, "--out") && jpeg)
            a->out = v;
        else if (is(o, "--tokens") && is(a->command, "decode"))
            a->tokens = v;
        else if (gen && is(o, "-n"))
            bad = parse_long(v, 1, MAX_IMAGES, &a->n);
        else if (gen && is(o, "--seed"))
            bad = parse_u64(v, &a->seed), a->has_seed = 1;
        else if (gen && is(o, "--top-k"))
            bad = parse_long(v, 1, 1 << 30, &a->top_k), a->has_top_k = 1;
        else if (gen && is(o, "--top-p"))
            bad = parse_double(v, &a->top_p), a->has_top_p = 1;
        else if (gen && is(o, "--temperature"))
            bad = parse_double(v, &a->temperature), a->has_temp = 1;
        else if (gen && is(o, "--cond-scale"))
            bad = parse_double(v, &a->cond_scale), a->has_cond = 1;
        else if (jpeg && is(o, "--quality"))
            bad = parse_long(v, DALLE_QUALITY_MIN, DALLE_QUALITY_MAX, &a->quality);
        else if (jpeg && is(o, "--subsampling"))
            bad = parse_long(v, 420, 444, &a->subsampling) ||
                  (a->subsampling != 420 && a->subsampling != 422 && a->subsampling != 444);
        else
            return fail(EXIT_USAGE, "unknown option '%s' for '%s'", o, a->command);
        if (bad)
            return fail(EXIT_USAGE, "bad value '%s' for %s", v, o);
    }
    if (!a->model) {
        if (dalle_demo_model_dir(a->demo_dir, sizeof a->demo_dir))
            return fail(EXIT_USAGE, "no --model given and no bundled demo model at %s%s",
                        a->demo_dir, "");
        a->model = a->demo_dir;
    }
    if (!a->prompt && !is(a->command, "decode"))
        return fail(EXIT_USAGE, "--prompt P is required%s%s", "", "");
    if (jpeg && !a->out)
        return fail(EXIT_USAGE, "--out DIR is required%s%s", "", "");
    if (is(a->command, "decode") && !a->tokens)
        return fail(EXIT_USAGE, "--tokens FILE is required%s%s", "", "");
    if (is(a->command, "rank") && (a->n_images < 1 || a->n_images > MAX_RANK_IMAGES))
        return fail(EXIT_USAGE, "rank takes 1..256 image files%s%s", "", "");
    return 0;
}

static json_t *int_array(const int32_t *v, int n) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(v[i]));
    return arr;
}

static int print_json(json_t *root) {
    int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 ? 0 : 1;
    fputc('\n', stdout);
    json_decref(root);
    return rc;
}

static json_t *timings_json(const dalle_timings *t, int images) {
    json_t *o = json_object();
    json_object_set_new(o, "text", json_real(t->text_ms));
    json_object_set_new(o, "encode", json_real(t->encode_ms));
    json_object_set_new(o, "decode", json_real(t->decode_ms));
    if (images) {
        json_object_set_new(o, "vqgan", json_real(t->vqgan_ms));
        json_object_set_new(o, "clip", json_real(t->clip_ms));
        json_object_set_new(o, "jpeg", json_real(t->jpeg_ms));
        json_object_set_new(o, "total", json_real(t->total_ms));
    }
    return o;
}

/* What ran: {"backend", "kernels", "weight_bytes"}. */
static json_t *engine_json(const dalle_model_info *info) {
    return json_pack("{s:s, s:s, s:I}", "backend", info->backend, "kernels", info->kernels,
                     "weight_bytes", (json_int_t)info->weight_bytes);
}

static int cmd_tokenize(dalle_model *m, const cli_args *a) {
    dalle_text t;
    dalle_error err = {0};
    if (dalle_text_encode(m, a->prompt, strlen(a->prompt), &t, &err) != DALLE_OK)
        return engine_error(&err);
    json_t *mask = json_array();
    for (int i = 0; i < t.text_length; i++)
        json_array_append_new(mask, json_integer(t.mask[i]));
    json_t *root = json_object();
    json_object_set_new(root, "normalized", json_string(t.normalized));
    json_object_set_new(root, "ids", int_array(t.ids, t.text_length));
    json_object_set_new(root, "mask", mask);
    json_object_set_new(root, "clip_ids", int_array(t.clip_ids, t.n_clip));
    dalle_text_free(&t);
    return print_json(root);
}

/* Generation parameters from the flags over the model's defaults; 0 or an exit status. */
static int gen_params(dalle_model *m, const cli_args *a, dalle_gen_params *p) {
    dalle_gen_params_default(m, p);
    p->n_images = (int)a->n;
    if (a->has_seed)
        p->seed = a->seed;
    else if (getrandom(&p->seed, sizeof p->seed, 0) != sizeof p->seed)
        p->seed = (uint64_t)time(NULL);
    p->seed &= (uint64_t)INT64_MAX; // seeds are 0..2^63-1 (JSON integers are signed)
    if (a->has_top_k)
        p->top_k = (int)a->top_k;
    if (a->has_top_p)
        p->top_p = (float)a->top_p;
    if (a->has_temp)
        p->temperature = (float)a->temperature;
    if (a->has_cond)
        p->cond_scale = (float)a->cond_scale;
    dalle_error err = {0};
    if (dalle_gen_params_check(m, p, MAX_IMAGES, &err) != DALLE_OK)
        return engine_error(&err);
    return 0;
}

static int cmd_tokens(dalle_model *m, dalle_state *s, const cli_args *a) {
    dalle_gen_params p;
    int rc = gen_params(m, a, &p);
    if (rc)
        return rc;
    dalle_model_info info;
    dalle_model_get_info(m, &info);
    int32_t *codes = malloc((size_t)p.n_images * info.image_length * sizeof *codes);
    if (!codes)
        return fail(1, "out of memory%s%s", "", "");
    dalle_timings tm;
    dalle_error err = {0};
    if (dalle_generate_codes(s, a->prompt, strlen(a->prompt), &p, codes, &tm, &err) != DALLE_OK) {
        free(codes);
        return engine_error(&err);
    }
    json_t *root = json_object(), *tokens = json_array();
    json_object_set_new(root, "seed", json_integer((json_int_t)p.seed));
    for (int i = 0; i < p.n_images; i++)
        json_array_append_new(tokens,
                              int_array(codes + (size_t)i * info.image_length, info.image_length));
    json_object_set_new(root, "tokens", tokens);
    json_object_set_new(root, "timings_ms", timings_json(&tm, 0));
    json_object_set_new(root, "engine", engine_json(&info));
    free(codes);
    return print_json(root);
}

static int make_dir(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST)
        return 0;
    return fail(1, "cannot create '%s': %s", dir, strerror(errno));
}

static int write_file(const char *dir, const char *name, const void *data, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        if (f)
            fclose(f);
        return fail(1, "cannot write '%s': %s", path, strerror(errno));
    }
    return 0;
}

static void out_params(dalle_model *m, const cli_args *a, dalle_output_params *o) {
    dalle_output_params_default(m, o);
    o->jpeg_quality = (int)a->quality;
    if (a->subsampling)
        o->jpeg_subsampling = (int)a->subsampling;
    if (a->no_rank)
        o->rank = 0;
}

static int cmd_generate(dalle_model *m, dalle_state *s, const cli_args *a) {
    dalle_gen_params p;
    int rc = gen_params(m, a, &p);
    if (rc || (rc = make_dir(a->out)))
        return rc;
    dalle_output_params o;
    out_params(m, a, &o);
    dalle_result r;
    dalle_error err = {0};
    if (dalle_generate(s, a->prompt, strlen(a->prompt), &p, &o, &r, &err) != DALLE_OK)
        return engine_error(&err);
    json_t *root = json_object(), *images = json_array();
    json_object_set_new(root, "seed", json_integer((json_int_t)p.seed));
    for (int k = 0; k < r.n_images && !rc; k++) {
        char name[32];
        snprintf(name, sizeof name, "%d.jpg", k);
        rc = write_file(a->out, name, r.images[k].jpeg, r.images[k].jpeg_size);
        json_t *img = json_object();
        json_object_set_new(img, "file", json_string(name));
        json_object_set_new(img, "index", json_integer(r.images[k].index));
        json_object_set_new(img, "score", r.ranked ? json_real(r.images[k].score) : json_null());
        json_array_append_new(images, img);
    }
    json_object_set_new(root, "images", images);
    json_object_set_new(root, "timings_ms", timings_json(&r.timings, 1));
    dalle_model_info info;
    dalle_model_get_info(m, &info);
    json_object_set_new(root, "engine", engine_json(&info));
    dalle_result_free(&r);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (!rc)
        rc = text ? write_file(a->out, "result.json", text, strlen(text)) : 1;
    if (!rc)
        printf("%s\n", text);
    free(text);
    json_decref(root);
    return rc;
}

/* The "tokens" arrays of a dalle-cli tokens output: codes[n · L]. */
static int read_tokens(const char *path, int L, int32_t **codes, int *n) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(EXIT_USAGE, "%s: %s", path, je.text);
    json_t *t = json_object_get(root, "tokens");
    int rc = 0;
    if (!json_is_array(t) || json_array_size(t) < 1 || json_array_size(t) > MAX_IMAGES)
        rc = fail(EXIT_USAGE, "%s: \"tokens\" must be an array of 1..64 code grids%s", path, "");
    *n = rc ? 0 : (int)json_array_size(t);
    *codes = rc ? NULL : malloc((size_t)*n * L * sizeof **codes);
    for (int i = 0; !rc && i < *n; i++) {
        json_t *row = json_array_get(t, (size_t)i);
        if (!json_is_array(row) || json_array_size(row) != (size_t)L) {
            rc = fail(EXIT_USAGE, "%s: every code grid must hold exactly the model's code count%s",
                      path, "");
            break;
        }
        for (int j = 0; j < L; j++) {
            json_t *v = json_array_get(row, (size_t)j);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX) {
                rc = fail(EXIT_USAGE, "%s: codes must be non-negative integers%s", path, "");
                break;
            }
            (*codes)[(size_t)i * L + j] = (int32_t)json_integer_value(v);
        }
    }
    json_decref(root);
    if (rc)
        free(*codes), *codes = NULL;
    return rc;
}

static int cmd_decode(dalle_model *m, dalle_state *s, const cli_args *a) {
    dalle_model_info info;
    dalle_model_get_info(m, &info);
    int32_t *codes = NULL;
    int n = 0, rc = read_tokens(a->tokens, info.image_length, &codes, &n);
    if (rc || (rc = make_dir(a->out)))
        return rc;
    const size_t R = (size_t)info.image_size;
    uint8_t *rgb = malloc((size_t)n * R * R * 3);
    dalle_jpeg_encoder *enc = NULL;
    dalle_error err = {0};
    if (!rgb)
        rc = fail(1, "out of memory%s%s", "", "");
    else if (dalle_decode_codes(s, codes, n, rgb, &err) != DALLE_OK)
        rc = engine_error(&err);
    else if (dalle_jpeg_encoder_new(&enc, &err) != DALLE_OK)
        rc = engine_error(&err);
    dalle_output_params o;
    out_params(m, a, &o);
    dalle_subsamp ss = DALLE_SUBSAMP_444;
    if (!rc && dalle_jpeg_subsamp_from(o.jpeg_subsampling, &ss, &err) != DALLE_OK)
        rc = engine_error(&err);
    for (int i = 0; !rc && i < n; i++) {
        const uint8_t *jpg;
        size_t size;
        if (dalle_jpeg_encode(enc, rgb + (size_t)i * R * R * 3, (int)R, (int)R, (int)a->quality, ss,
                              &jpg, &size, &err) != DALLE_OK) {
            rc = engine_error(&err);
        } else {
            char name[32];
            snprintf(name, sizeof name, "%d.jpg", i);
            rc = write_file(a->out, name, jpg, size);
        }
    }
    dalle_jpeg_encoder_free(enc);
    free(rgb);
    free(codes);
    return rc;
}

/* Decode a JPEG file to packed RGB. */
static int read_jpeg(const char *path, uint8_t **rgb, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(EXIT_USAGE, "cannot open '%s': %s", path, strerror(errno));
    unsigned char *buf = malloc(MAX_FILE_BYTES);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES, f) : 0;
    int more = fgetc(f) != EOF;
    fclose(f);
    int rc = 0, ss, cs;
    tjhandle tj = tjInitDecompress();
    *rgb = NULL;
    if (!buf || !tj)
        rc = fail(1, "out of memory%s%s", "", "");
    else if (more)
        rc = fail(EXIT_USAGE, "'%s' is larger than 64 MiB%s", path, "");
    else if (tjDecompressHeader3(tj, buf, n, w, h, &ss, &cs) != 0 || *w < 1 || *h < 1 ||
             *w > 16384 || *h > 16384)
        rc = fail(EXIT_USAGE, "'%s' is not a JPEG image this tool reads (%s)", path,
                  tjGetErrorStr2(tj));
    else if (!(*rgb = malloc((size_t)*w * *h * 3)))
        rc = fail(1, "out of memory%s%s", "", "");
    else if (tjDecompress2(tj, buf, n, *rgb, *w, 0, *h, TJPF_RGB, 0) != 0)
        rc = fail(EXIT_USAGE, "'%s': %s", path, tjGetErrorStr2(tj));
    if (tj)
        tjDestroy(tj);
    free(buf);
    if (rc)
        free(*rgb), *rgb = NULL;
    return rc;
}

static int cmd_rank(dalle_model *m, dalle_state *s, const cli_args *a) {
    const int n = a->n_images;
    uint8_t *rgb[MAX_RANK_IMAGES] = {0};
    int w[MAX_RANK_IMAGES], h[MAX_RANK_IMAGES], rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = read_jpeg(a->images[i], &rgb[i], &w[i], &h[i]);
    dalle_text t;
    dalle_error err = {0};
    float scores[MAX_RANK_IMAGES];
    int32_t order[MAX_RANK_IMAGES];
    if (!rc && dalle_text_encode(m, a->prompt, strlen(a->prompt), &t, &err) != DALLE_OK)
        rc = engine_error(&err);
    else if (!rc) {
        if (dalle_rank_images(s, t.clip_ids, (const uint8_t *const *)rgb, w, h, n, scores, order,
                              &err) != DALLE_OK)
            rc = engine_error(&err);
        dalle_text_free(&t);
    }
    if (!rc) {
        json_t *root = json_object(), *sc = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(sc, json_real(scores[i]));
        json_object_set_new(root, "scores", sc);
        json_object_set_new(root, "order", int_array(order, n));
        rc = print_json(root);
    }
    for (int i = 0; i < n; i++)
        free(rgb[i]);
    return rc;
}

int main(int argc, char **argv) {
    cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc == -1)
        fputs(USAGE, stdout), rc = 0;
    if (rc == -2)
        dalle_version_print(stdout, "dalle-cli"), rc = 0;
    if (rc || !a.command || argc < 3) {
        free(a.images);
        return rc;
    }
    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.threads = (int)a.threads;
    if (a.backend)
        mp.backend = a.backend;
    dalle_model *m;
    dalle_error err = {0};
    if (dalle_model_load(&m, a.model, &mp, &err) != DALLE_OK) {
        free(a.images);
        return fail(1, "%s%s", err.msg, "");
    }
    dalle_state *s = NULL;
    dalle_state_params sp = {.max_images = (int)a.n, .max_prompts = 1};
    if (is(a.command, "decode") || is(a.command, "rank"))
        sp.max_images = 8;
    if (!is(a.command, "tokenize") && dalle_state_new(&s, m, &sp, &err) != DALLE_OK)
        rc = fail(1, "%s%s", err.msg, "");
    else if (is(a.command, "tokenize"))
        rc = cmd_tokenize(m, &a);
    else if (is(a.command, "tokens"))
        rc = cmd_tokens(m, s, &a);
    else if (is(a.command, "generate"))
        rc = cmd_generate(m, s, &a);
    else if (is(a.command, "decode"))
        rc = cmd_decode(m, s, &a);
    else
        rc = cmd_rank(m, s, &a);
    dalle_state_free(s);
    dalle_model_free(m);
    free(a.images);
    return rc;
}
