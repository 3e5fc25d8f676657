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

/* ---- text --------------------------------------------------------------------- */

#define DALLE_MAX_PROMPT_BYTES 4096 /* longer prompts are rejected (DALLE_ERR_INVALID_ARG) */
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

/* ---- generation ----------------------------------------------------------------- */

typedef struct {
    int n_images;      /* >= 1, <= the state's max_images */
    uint64_t seed;     /* image i draws from RNG(seed, i, step) */
    float cond_scale;  /* classifier-free guidance scale, [0, 1000] */
    float temperature; /* (0, 100] */
    float top_p;       /* (0, 1] */
    int top_k;         /* [1, image_vocab_size] */
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
 * RNG(params[r].seed, i, step), so its codes equal those of the request run alone.
 * should_stop of any request cancels the whole batch. */
dalle_status dalle_generate_codes_batch(dalle_state *s, int n_req, const dalle_text *texts,
                                        const dalle_gen_params *params, int32_t *const *codes,
                                        dalle_timings *timings, dalle_error *err);

/* ---- iteration-level batching ------------------------------------------------------
 * A state decodes up to max_images images at once. A job (one prompt, n images) joins the
 * running batch at any step when the state has n free images and a free prompt block
 * (max_prompts); each step advances every running image by one code; a job's images leave
 * the batch when their image_length codes are written, or at once when it is cancelled.
 * One thread drives a state: job_start / step / cancel are not concurrent. */

/* Start a job; codes[n_images · image_length] receives its codes step by step and must stay
 * valid until the job is done or cancelled. *job: a handle, ≥ 0. DALLE_ERR_INVALID_ARG for
 * bad parameters or text; DALLE_ERR_UNSUPPORTED when the state can never hold the job
 * (n_images > max_images); when it merely has no room now, returns DALLE_OK with *job = -1. */
dalle_status dalle_job_start(dalle_state *s, const dalle_text *text, const dalle_gen_params *p,
                             int32_t *codes, int *job, dalle_error *err);

/* One decode step of every running image (a no-op when none runs). Polls should_stop of each
 * running job first and cancels those that ask. */
void dalle_state_step(dalle_state *s);

/* Steps done by the job's images (0..image_length); image_length when done; -1 for a handle
 * that is not running or done (cancelled, never started). */
int dalle_job_progress(const dalle_state *s, int job);

/* Free a done job's handle, or cancel a running one (its rows are free for the next step). */
void dalle_job_release(dalle_state *s, int job);

/* Images running now, and the free room for new images / prompts. */
int dalle_state_running_images(const dalle_state *s);
int dalle_state_free_images(const dalle_state *s);
int dalle_state_free_prompts(const dalle_state *s);

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

typedef struct {
    int jpeg_quality;     /* 1..100 (default 90) */
    int jpeg_subsampling; /* 444, 422 or 420 (default 420) */
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
