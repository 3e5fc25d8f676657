/* model_config.h — config.json of a model directory: every hyper-parameter, the generation
 * defaults and the file names, validated before anything is sized from them.
 *
 * Contract: dalle_model_config_parse() takes the raw bytes of config.json (not
 * NUL-terminated) and either fills *cfg completely or returns DALLE_ERR_FORMAT with one
 * line naming the key and what was expected. Unknown keys are errors (typos must not pass
 * silently), except inside the optional "vqgan" and "clip" sections, which are kept as JSON
 * text for the stages that read them. File names must be plain names inside the model
 * directory (no '/', no "..").
 * The optional "description" (prose for people: what the model draws; newlines allowed, no
 * other control characters, below DALLE_DESCRIPTION_MAX bytes) and "examples" (1 to
 * DALLE_MODEL_MAX_EXAMPLES prompts, each non-empty, one line, below DALLE_EXAMPLE_MAX
 * bytes) are shown by the server's /info and web page.
 * On failure *cfg is left zeroed; dalle_model_config_free() is safe on it, and twice.
 */
#ifndef DALLE_MODEL_LOADER_MODEL_CONFIG_H
#define DALLE_MODEL_LOADER_MODEL_CONFIG_H

#include <stddef.h>

#include "dalle.h"

#define DALLE_CONFIG_FORMAT   "dalle-server-model"
#define DALLE_CONFIG_VERSION  1
#define DALLE_NAME_MAX        128
#define DALLE_DESCRIPTION_MAX 2048 /* bytes of "description", its NUL included */
#define DALLE_EXAMPLE_MAX     256  /* bytes of one of "examples", its NUL included */

typedef struct {
    int d_model; /* d: 1024 mini, 2048 Mega */
    int encoder_layers;
    int decoder_layers;
    int heads;            /* d_model % heads == 0 */
    int glu_dim;          /* F: 2730 mini, 4096 Mega */
    int text_vocab_size;  /* encoder embedding rows */
    int text_length;      /* 64 */
    int image_vocab_size; /* VQGAN codes that can be sampled: 16384 */
    int image_length;     /* 256 decoder positions */
    int lm_head_size;     /* decoder embedding rows = lm_head outputs (16385 | 16416) */
    int start_token;      /* 16384 (dalle-mini) or 16383 (min-dalle); < lm_head_size */
    float layer_norm_eps;
} dalle_bart_hparams;

typedef struct {
    int normalize; /* run the dalle-mini TextNormalizer before BPE */
    int bos_id, pad_id, eos_id, unk_id;
} dalle_text_hparams;

typedef struct {
    float cond_scale;
    float temperature;
    float top_p;
    int top_k;
} dalle_gen_defaults;

typedef struct {
    char name[DALLE_NAME_MAX];
    dalle_bart_hparams bart;
    dalle_text_hparams text;
    dalle_gen_defaults gen;
    /* file names inside the model directory; "" when absent (optional ones) */
    char encoder_file[DALLE_NAME_MAX];
    char decoder_file[DALLE_NAME_MAX];
    char vocab_file[DALLE_NAME_MAX];
    char merges_file[DALLE_NAME_MAX];
    char clip_merges_file[DALLE_NAME_MAX];   /* optional */
    char wiki_words_file[DALLE_NAME_MAX];    /* optional: hashtag splitting */
    char vqgan_file[DALLE_NAME_MAX];         /* optional until the image stage */
    char clip_file[DALLE_NAME_MAX];          /* optional until the image stage */
    char description[DALLE_DESCRIPTION_MAX]; /* "" when absent */
    char examples[DALLE_MODEL_MAX_EXAMPLES][DALLE_EXAMPLE_MAX];
    int n_examples;   /* 0 when absent */
    char *vqgan_json; /* raw "vqgan" section or NULL (malloc'd) */
    char *clip_json;  /* raw "clip" section or NULL (malloc'd) */
} dalle_model_config;

dalle_status dalle_model_config_parse(dalle_model_config *cfg, const char *json, size_t n,
                                      const char *label, dalle_error *err);

/* Read DIR/config.json (at most 1 MiB) and parse it with the label "DIR/config.json". */
dalle_status dalle_model_config_load(dalle_model_config *cfg, const char *dir, dalle_error *err);

void dalle_model_config_free(dalle_model_config *cfg);

#endif /* DALLE_MODEL_LOADER_MODEL_CONFIG_H */
