/* dalle.h — public C API of the dalle-server engine.
 *
 * Contract: a dalle_model is loaded once and is read-only afterwards, so any number of
 * threads may share one. Everything a generation writes (KV cache, activations, RNG state)
 * lives in a dalle_state; a state is used by one thread at a time. Every function that can
 * fail on input returns a dalle_status and, when given a dalle_error, a one-line message.
 */
#ifndef DALLE_H
#define DALLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DALLE_OK = 0,
    DALLE_ERR_INVALID_ARG, /* bad input from the caller (prompt, parameter range) */
    DALLE_ERR_IO,          /* a file could not be opened, read or mapped */
    DALLE_ERR_FORMAT,      /* a model file is damaged or does not match config.json */
    DALLE_ERR_NOMEM,       /* an allocation failed */
    DALLE_ERR_UNSUPPORTED, /* valid but not implemented here (dtype, backend) */
    DALLE_ERR_BACKEND,     /* the compute backend failed */
    DALLE_ERR_CANCELLED,   /* the caller asked to stop */
} dalle_status;

/* A status plus a human-readable one-line message. */
typedef struct {
    dalle_status status;
    char msg[512];
} dalle_error;

const char *dalle_status_str(dalle_status s);

/* ---- model -------------------------------------------------------------------- */

typedef struct dalle_model dalle_model; /* read-only after load; share freely */
typedef struct dalle_state dalle_state; /* one per worker thread */

typedef struct {
    const char *backend; /* "cpu" or "cuda" (builds with CUDA) */
    int threads;         /* CPU threads; <= 0: all cores */
    int device;          /* device ordinal of the backend (the GPU for "cuda"); 0 for "cpu" */
} dalle_model_params;

void dalle_model_params_default(dalle_model_params *p);

/* Devices a backend can run on: 1 for "cpu"; the visible GPUs for "cuda" (0 without a
 * driver or a device, and in builds without CUDA); 0 for an unknown name. Never fails. */
int dalle_backend_device_count(const char *backend);

/* The backends this build holds, for --version: "cpu (GEMM avx512 avx2 portable; this CPU:
 * avx2)", then ", cuda" in builds with CUDA. Never fails; truncated to size. */
void dalle_backends_describe(char *out, size_t size);

/* Load a model directory (config.json, safetensors weights, tokenizer files). The
 * unconditional text branch is encoded once here. */
dalle_status dalle_model_load(dalle_model **out, const char *dir, const dalle_model_params *p,
                              dalle_error *err);
void dalle_model_free(dalle_model *m);

#define DALLE_MODEL_MAX_EXAMPLES 16 /* example prompts a model directory may carry */

typedef struct {
    const char *name;
    const char *backend;
    const char *kernels;  /* the backend's kernel variant: the CPU GEMM's instruction set
                             (avx512, avx2, portable), else the backend name */
    int64_t weight_bytes; /* weights held in backend memory (BART, VQGAN, CLIP) */
    int d_model, encoder_layers, decoder_layers, heads, glu_dim;
    int text_vocab_size, text_length, image_vocab_size, image_length, start_token;
    int normalize_text;
    int has_clip_tokenizer;
    int has_vqgan, has_clip;
    int image_size; /* VQGAN output side in pixels; 0 without a VQGAN */
    /* what the model draws, from config.json ("" / 0 when it says nothing) */
    const char *description;
    const char *examples[DALLE_MODEL_MAX_EXAMPLES]; /* example prompts */
    int n_examples;
} dalle_model_info;

void dalle_model_get_info(const dalle_model *m, dalle_model_info *info);

/* ---- device faults ------------------------------------------------------------------
 * A fatal device fault (a sticky CUDA error: nothing more can run on that device in this
 * process) is reported from inside the failing backend call, on the thread that made it.
 * Without a handler the engine prints the message and aborts. With one (one per process)
 * the handler is called instead and must not return: it may park the calling thread,
 * answer clients and end the process, but must not call into the engine again.
 * Testing: DALLE_FAULT_INJECT=step:N makes every backend created afterwards report such a
 * fault in its N-th decode step (the sampling call), through the same path. */
typedef void (*dalle_fault_handler)(const char *msg, void *user);
void dalle_set_fault_handler(dalle_fault_handler fn, void *user);

/* ---- limits -------------------------------------------------------------------
 * Every generation-parameter range and size limit, named once. The engine enforces them
 * (dalle_text_encode, dalle_gen_params_check, dalle_state_new, dalle_generate); the server's
 * request validator and settings and the CLI's parser and --help use these names, and
 * tests/server/test_limits.py checks openapi.yaml and the CLI's --help against this block.
 * Integer literals, so that front ends can also print them. */
#define DALLE_MAX_PROMPT_BYTES 4096 /* prompt bytes; the server's --max-prompt is at most this */
#define DALLE_MAX_STATE_IMAGES 4096 /* max_images of one state (max_prompts ≤ max_images) */
#define DALLE_COND_SCALE_MIN   0    /* cond_scale in [MIN, MAX] */
#define DALLE_COND_SCALE_MAX   1000
#define DALLE_TEMPERATURE_MAX  100       /* temperature in (0, MAX] */
#define DALLE_TOP_P_MAX        1         /* top_p in (0, MAX] */
#define DALLE_TOP_K_MIN        1         /* top_k in [MIN, the model's image_vocab_size] */
#define DALLE_SEED_MAX         INT64_MAX /* seed in [0, MAX] */
#define DALLE_QUALITY_MIN      1         /* JPEG quality in [MIN, MAX] */
#define DALLE_QUALITY_MAX      100

/* ---- text --------------------------------------------------------------------- */

#define DALLE_CLIP_TEXT_LENGTH 77

typedef struct {
    char *normalized; /* the text given to BPE (normalizer output, or the prompt) */
    int text_length;  /* = model text_length */
    int32_t *ids;     /* [text_length] <s> … </s> <pad>… */
    uint8_t *mask;    /* [text_length] 1 for real tokens */
    int n_ids;        /* real tokens */
    int32_t clip_ids[DALLE_CLIP_TEXT_LENGTH]; /* SOT … EOT 0…; n_clip = 0 without CLIP */
    int n_clip;
} dalle_text;

/* Normalize and tokenize a UTF-8 prompt (both BART and, when the model has one, CLIP). */
dalle_status dalle_text_encode(const dalle_model *m, const char *prompt, size_t n, dalle_text *out,
                               dalle_error *err);
void dalle_text_free(dalle_text *t);

/* ---- generation -----------------------------------------------------------------
 * Reproducibility contract. Image i of a request samples with RNG(seed, i, step) (counter-
 * based: kernels/rng.h), so its random numbers never depend on the batch, the state or the
 * backend. What else an image's codes depend on differs per backend:
 *  - cpu: nothing else. Every op computes a row in an order that depends on the shapes of
 *    the model only (the GEMM sums K in fixed segments, kernels/cpu/linalg.c), so a seeded
 *    image is bit-identical alone, in a larger n, or sharing the batch with other requests,
 *    for any state size, thread count and GEMM variant (avx512, avx2, portable).
 *  - cuda: deterministic for one batch shape (same seed, same rows → same codes, run after
 *    run on one GPU and library version), but not batch-invariant: the matmuls go through
 *    cuBLAS, which picks its kernel and summation split by the number of rows (the decode
 *    step pads rows to a power of two), so a logit can move by float rounding and, where it
 *    sits on a sampling boundary, the image can change from that step on.
 *  - across backends: the same seed gives the same random numbers, not the same bits; codes
 *    agree until a rounding difference crosses a sampling boundary (tests/gpu/gpu_e2e.c
 *    measures how often). */

typedef struct {
    int n_images;      /* >= 1, <= the state's max_images */
    uint64_t seed;     /* image i draws from RNG(seed, first_image + i, step) */
    int first_image;   /* >= 0 (default 0): a request split over several calls or jobs gives
                          each part the index of its first image, and gets its images */
    float cond_scale;  /* classifier-free guidance scale (limits above) */
    float temperature; /* (limits above) */
    float top_p;       /* (limits above) */
    int top_k;         /* [DALLE_TOP_K_MIN, image_vocab_size] */
    /* optional: polled between decode steps; non-zero stops with DALLE_ERR_CANCELLED */
    int (*should_stop)(void *user);
    void *user;
} dalle_gen_params;

/* The model's config.json defaults, n_images 1, seed 0. */
void dalle_gen_params_default(const dalle_model *m, dalle_gen_params *p);

/* Range checks; the message names the parameter. */
dalle_status dalle_gen_params_check(const dalle_model *m, const dalle_gen_params *p, int max_images,
                                    dalle_error *err);

typedef struct {
    int max_images;  /* images decoded together, over all prompts (2 decoder rows each) */
    int max_prompts; /* prompts whose images can share one decode batch (default 1) */
} dalle_state_params;

dalle_status dalle_state_new(dalle_state **out, const dalle_model *m, const dalle_state_params *p,
                             dalle_error *err);
void dalle_state_free(dalle_state *s);

/* Wall time of each stage of one call, in milliseconds (0 for stages not run). */
typedef struct {
    double text_ms, encode_ms, decode_ms, vqgan_ms, clip_ms, jpeg_ms, total_ms;
} dalle_timings;

/* Prompt → image codes: codes[n_images · image_length], raster order. timings optional. */
dalle_status dalle_generate_codes(dalle_state *s, const char *prompt, size_t n,
                                  const dalle_gen_params *p, int32_t *codes, dalle_timings *timings,
                                  dalle_error *err);

/* The same from an already encoded text (dalle_text_encode, or ids from elsewhere:
 * text->ids and text->mask are read, nothing else). */
dalle_status dalle_generate_codes_text(dalle_state *s, const dalle_text *text,
                                       const dalle_gen_params *p, int32_t *codes,
                                       dalle_timings *timings, dalle_error *err);

/* Several prompts decoded in one batch (at most max_prompts, and max_images images in
 * all): request r uses texts[r] and params[r] and receives params[r].n_images ·
 * image_length codes in codes[r]. Image i of request r draws from
 * RNG(params[r].seed, i, step), so on the cpu backend its codes equal those of the request
 * run alone (the contract above).
 * should_stop of any request cancels the whole batch. */
dalle_status dalle_generate_codes_batch(dalle_state *s, int n_req, const dalle_text *texts,
                                        const dalle_gen_params *params, int32_t *const *codes,
                                        dalle_timings *timings, dalle_error *err);

/* ---- iteration-level batching ------------------------------------------------------
 * A state decodes up to max_images images at once. A job (one prompt, n images) joins the
 * running batch at any step when the state has n free images and a free prompt block
 * (max_prompts); each step advances every running image by one code.
 *
 * A job's codes stay in the state's backend memory. A decode step copies nothing to the
 * host and never waits for the device, also when jobs join or leave the batch (the token an
 * image feeds next stays on the device); only dalle_job_codes, dalle_job_preview and
 * dalle_job_finish bring data back. A done job's images no longer decode but stay held
 * until dalle_job_finish or dalle_job_release frees them; a cancelled job's images are free
 * at once. One thread drives a state: no two of these calls run at once on one state. */

/* Start a job. *job: a handle, ≥ 0. DALLE_ERR_INVALID_ARG for bad parameters or text;
 * DALLE_ERR_UNSUPPORTED when the state can never hold the job (n_images > max_images); when
 * it merely has no room now, returns DALLE_OK with *job = -1. */
dalle_status dalle_job_start(dalle_state *s, const dalle_text *text, const dalle_gen_params *p,
                             int *job, dalle_error *err);

/* One decode step of every running image (a no-op when none runs). Polls should_stop of each
 * running job first and cancels those that ask. DALLE_ERR_NOMEM when the backend ran out of
 * working memory: every running job was then stopped (progress -1; release them) and the
 * state is usable again. */
dalle_status dalle_state_step(dalle_state *s);

/* Steps done by the job's images (0..image_length); image_length when done; -1 for a handle
 * that is not running or done (cancelled, never started). */
int dalle_job_progress(const dalle_state *s, int job);

/* The codes of a running or done job so far, one device→host copy: codes[i·image_length +
 * t] for image i and t < progress (the rest is left as it was). Returns the progress (-1:
 * not running or done, nothing written). */
int dalle_job_codes(dalle_state *s, int job, int32_t *codes);

/* A preview of a running or done job with progress ≥ 1: its codes so far, each code not
 * generated yet copying the code one latent row above it (the last generated row repeats
 * downward; in an unfinished first row, the last generated code), decoded by the VQGAN into
 * rgb [n_images, R, R, 3] by index. Previews only read: the job's result is the same. */
dalle_status dalle_job_preview(dalle_state *s, int job, uint8_t *rgb, dalle_error *err);

/* Where dalle_job_finish puts a job's result; every array has n_images entries (codes
 * n_images · image_length, rgb n_images · R · R · 3). */
typedef struct {
    int32_t *codes; /* by image index; NULL: not wanted */
    uint8_t *rgb;   /* [n_images, R, R, 3]: best first when ranked, else by index */
    int32_t *order; /* the index in the job of each rgb entry (its RNG stream: + first_image) */
    float *scores;  /* the CLIP score of each rgb entry; 0 when not ranked */
} dalle_job_output;

/* Finish a done job and free its handle (also on error): VQGAN → pixel bytes in backend
 * memory → CLIP preprocessing and image embeddings there (ranked when clip_ids, the prompt's
 * dalle_text.clip_ids, is given: needs CLIP) → rgb, order, scores on the host. timings
 * (optional): vqgan_ms, clip_ms. Needs a model with a VQGAN; DALLE_ERR_INVALID_ARG for a
 * handle that is not done. */
dalle_status dalle_job_finish(dalle_state *s, int job, const int32_t *clip_ids,
                              const dalle_job_output *out, dalle_timings *timings,
                              dalle_error *err);

/* Free a done job's handle, or cancel a running one (its rows are free for the next step). */
void dalle_job_release(dalle_state *s, int job);

/* Images running or held by done jobs now, and the free room for new images / prompts. */
int dalle_state_running_images(const dalle_state *s);
int dalle_state_free_images(const dalle_state *s);
int dalle_state_free_prompts(const dalle_state *s);

/* Device→host copies and waits for the device made by the state's backend so far (the CPU
 * backend counts as if it were a device): what a caller can check per step. */
void dalle_state_device_counts(const dalle_state *s, long *to_host_copies, long *syncs);

/* ---- images ------------------------------------------------------------------- */

/* Image codes → pixels: rgb [n, R, R, 3] uint8 HWC (R = the VQGAN resolution), clip(0,1)·255
 * truncated. Codes outside the codebook and non-finite decoder output are errors. Needs a
 * model with a VQGAN. */
dalle_status dalle_decode_codes(dalle_state *s, const int32_t *codes, int n, uint8_t *rgb,
                                dalle_error *err);

/* CLIP scores of n RGB images (any sizes; resized like PIL bicubic + center crop) against
 * the CLIP ids of a prompt (dalle_text.clip_ids): scores[i] = exp(logit_scale)·cosine;
 * order = image indexes best first (ties by index). Needs a model with CLIP. */
dalle_status dalle_rank_images(dalle_state *s, const int32_t *clip_ids, const uint8_t *const *rgb,
                               const int *width, const int *height, int n, float *scores,
                               int32_t *order, dalle_error *err);

/* The ranking rule of every ranked output: order = the indexes of scores[n], highest score
 * first, ties by index (a front end that ranks images from several jobs uses it too). */
void dalle_rank_order(const float *scores, int n, int32_t *order);

typedef struct {
    int jpeg_quality;     /* DALLE_QUALITY_MIN..MAX (default 90) */
    int jpeg_subsampling; /* 444, 422 or 420 (default 444 for images below 256×256, else 420) */
    int rank;             /* order by CLIP score (default: 1 when the model has CLIP) */
} dalle_output_params;

void dalle_output_params_default(const dalle_model *m, dalle_output_params *o);

typedef struct {
    int index;     /* image index in the request (its RNG stream) */
    float score;   /* CLIP score; 0 when not ranked */
    uint8_t *jpeg; /* the JPEG file */
    size_t jpeg_size;
} dalle_image;

typedef struct {
    int n_images, width, height, ranked;
    dalle_image *images; /* best first when ranked, else by index */
    int32_t *codes;      /* [n_images, image_length], by index */
    dalle_timings timings;
} dalle_result;

/* The whole pipeline: prompt → codes → images → CLIP ranking → JPEG files. */
dalle_status dalle_generate(dalle_state *s, const char *prompt, size_t n, const dalle_gen_params *p,
                            const dalle_output_params *o, dalle_result *out, dalle_error *err);
void dalle_result_free(dalle_result *r);

#ifdef __cplusplus
}
#endif
#endif /* DALLE_H */
