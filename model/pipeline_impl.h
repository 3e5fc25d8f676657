/* pipeline_impl.h — the model and state structures behind dalle.h, shared by pipeline.c
 * (loading, text, state) and generate.c (decode batches, images, ranking, results). Not a
 * public header.
 *
 * Model/state split: dalle_model holds the config, the weights (in the model backend),
 * the tokenizers and the unconditional encoder output; it is never written after load.
 * dalle_state owns a compute backend and every buffer a generation writes, sized at
 * creation from max_images and max_prompts. Cross-attention block 0 of every state holds
 * the unconditional branch (projected once at state creation); blocks 1..max_prompts the
 * prompts of the current batch.
 */
#ifndef DALLE_MODEL_PIPELINE_IMPL_H
#define DALLE_MODEL_PIPELINE_IMPL_H

#include "common/jpeg.h"
#include "dalle.h"
#include "kernels/ops.h"
#include "model/bart.h"
#include "model/clip.h"
#include "model/image_prep.h"
#include "model/text/bart_tokenizer.h"
#include "model/text/clip_tokenizer.h"
#include "model/text/normalize.h"
#include "model/vqgan.h"
#include "model_loader/model_config.h"

#define DALLE_UNCOND_BLOCK 0

typedef enum {
    DALLE_JOB_FREE = 0,
    DALLE_JOB_RUNNING,
    DALLE_JOB_DONE,
    DALLE_JOB_CANCELLED
} dalle_job_state;

/* One prompt's images in the running batch (iteration-level batching, generate.c). */
typedef struct {
    dalle_job_state state;
    int block; /* its cross-attention block, 1..max_prompts */
    int step;  /* codes written per image (in the state's work.codes_dev) */
    dalle_gen_params p;
} dalle_job_rec;

struct dalle_model {
    dalle_model_config cfg;
    dalle_model_params params;
    dalle_backend *be; /* owns the weights */
    dalle_bart bart;
    int has_vqgan, has_clip;
    dalle_vqgan vqgan;
    dalle_clip clip;
    dalle_normalizer *normalizer;
    dalle_bart_tokenizer *bpe;
    dalle_clip_tokenizer *clip_bpe; /* NULL when the model has no CLIP merges */
    float *uncond_enc;              /* host [T, C] encoder output of <s></s><pad>… */
    uint8_t *uncond_mask;           /* host [T] */
};

struct dalle_state {
    const dalle_model *m;
    dalle_backend *be;
    int max_images, max_prompts;
    dalle_bart_work work;
    float *enc_out;                      /* backend [max_prompts, T, C] */
    int32_t *ids;                        /* host [max_prompts, T] */
    uint8_t *mask;                       /* host [max_prompts, T] */
    int32_t *token, *pos, *slot, *block; /* host [2·max_images] decoder row arrays */
    dalle_sample_params *sp;             /* host [max_images] */
    int32_t *step, *sampled;             /* host [max_images]; sampled: the codes_dev index of
                                            each image's code (generate.c) */
    int dev_tokens;                      /* images of the last step, whose next tokens are in
                                            work.step_dev rows in batch_image order */
    dalle_job_rec *jobs;                 /* [max_images]: a job has at least one image */
    int32_t *image_job;                  /* [max_images]: image slot k → job, -1 free */
    int32_t *image_index;                /* [max_images]: image slot k → index in its job */
    int32_t *batch_image;                /* [max_images]: compact row j → image slot k */
    int32_t *batch_jobs;                 /* [max_prompts]: dalle_generate_codes_batch's jobs */
    int32_t *codes_host;                 /* host [2·max_images, image_length]: codes_dev rows */
    int32_t *preview_codes;              /* host [max_images, image_length] */
    float *scores;                       /* host [max_images]: CLIP scores by image index */
    int32_t *order;                      /* host [max_images]: image indexes best first */
    const uint8_t **image_ptr;           /* host [max_images]: images to rank */
    int *image_side;                     /* host [max_images] */
    uint8_t *block_used;                 /* [1 + max_prompts] */
    dalle_vqgan_work vqgan;              /* when the model has a VQGAN */
    dalle_clip_work clip;                /* when the model has CLIP */
    dalle_image_prep prep;               /* VQGAN output → CLIP input */
    dalle_clip_prep_plan prep_plan;      /* prep as a clip_prep plan (ops.h), in backend memory */
    void *prep_plan_mem;                 /* backend: prep_plan's arrays; NULL without the plan */
    float *clip_pixels;                  /* host [max_images, S, S, 3] */
    float *clip_img;                     /* host [max_images, E] */
    float *clip_txt;                     /* host [E] */
    uint8_t *rgb;                        /* host [max_images, R, R, 3] */
    dalle_jpeg_encoder *jpeg;
};

double dalle_now_ms(void);

#endif /* DALLE_MODEL_PIPELINE_IMPL_H */
