/* clip.h — CLIP (docs/model-spec.md §6.4–§6.5): the ViT image tower, the causal text tower and the
 * cosine scores used to rank a request's images, written once against the backend seam.
 * Weights are read straight from a Hugging Face CLIPModel safetensors file (HF names,
 * docs/model-spec.md §7.4); the hyper-parameters come from the "clip" section of config.json:
 *
 *   "clip": {
 *     "embed_dim": 512,                  projection width E
 *     "layer_norm_eps": 1e-5,            every LayerNorm
 *     "logit_scale_from_weights": true,  optional, default true: exp(logit_scale) from the
 *                                        file's 0-d tensor "logit_scale";
 *     "logit_scale": 4.6052,             false: this log-scale instead (required then, and
 *                                        not allowed otherwise); the file's tensor, if any,
 *                                        is ignored
 *     "vision": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12,
 *                "heads": 12, "mlp_dim": 3072},
 *     "text": {"context_length": 77, "vocab_size": 49408, "width": 512, "layers": 12,
 *              "heads": 8, "mlp_dim": 2048}
 *   }
 *
 * Every key is checked (integers in range, unknown keys rejected, image_size a multiple of
 * patch_size, heads dividing width); messages name the key as clip.vision.width.
 * Both towers use quick GELU (all OpenAI CLIPs do).
 *
 * Contract: dalle_clip is read-only after dalle_clip_load. A dalle_clip_work holds what
 * one worker writes, sized at creation for at most `max_images` images; nothing is
 * allocated per call. Inputs and outputs of the embed and score functions are host memory.
 *
 * Dimension letters: B images, S image side, p patch side, G = (S/p)² patches, Tv = G + 1
 * vision tokens, Cv vision width, Fv vision MLP; Tt context length, Ct text width, Ft text
 * MLP; E embedding width.
 */
#ifndef DALLE_MODEL_CLIP_H
#define DALLE_MODEL_CLIP_H

#include "kernels/ops.h"

typedef struct {
    int width, layers, heads, mlp_dim;
} dalle_clip_tower_hparams;

typedef struct {
    int embed_dim;
    float layer_norm_eps;
    int logit_scale_from_weights;
    float logit_scale; /* log of the score scale; from the weights when loaded */
    int image_size, patch_size;
    int context_length, vocab_size;
    dalle_clip_tower_hparams vision, text;
} dalle_clip_hparams;

/* Parse the "clip" section (`json`, NUL-terminated; NULL = the section is missing).
 * `label` names config.json in messages. */
dalle_status dalle_clip_hparams_parse(dalle_clip_hparams *hp, const char *json, const char *label,
                                      dalle_error *err);

typedef struct {
    dalle_tensor ln1_g, ln1_b, ln2_g, ln2_b; // [C]
    dalle_tensor q, k, v, o;                 // [C, C]
    dalle_tensor q_b, k_b, v_b, o_b;         // [C]
    dalle_tensor fc1;                        // [F, C]
    dalle_tensor fc1_b;                      // [F]
    dalle_tensor fc2;                        // [C, F]
    dalle_tensor fc2_b;                      // [C]
} dalle_clip_layer;

typedef struct {
    dalle_clip_tower_hparams hp;
    dalle_clip_layer *layers;
    dalle_tensor final_g, final_b; // [C] post_layernorm (vision) / final_layer_norm (text)
    dalle_tensor proj;             // [E, C]
} dalle_clip_tower;

typedef struct {
    dalle_clip_hparams hp;
    dalle_clip_tower vision, text;
    dalle_tensor patch_w;            // [Cv, p·p·3]: the conv weight, (dy, dx, c) order
    dalle_tensor class_emb;          // [Cv]
    dalle_tensor vision_pos;         // [Tv, Cv]
    dalle_tensor pre_ln_g, pre_ln_b; // [Cv]
    dalle_tensor token_emb;          // [vocab, Ct]
    dalle_tensor text_pos;           // [Tt, Ct]
    float score_scale;               // exp(logit_scale)
    void *block;                     // the one weight allocation
    size_t weight_bytes;             // its size
    dalle_backend *be;
} dalle_clip;

/* Load the towers from a HF CLIPModel safetensors file (F32/F16/BF16). Every tensor of
 * the file must be used; shapes must match hp. */
dalle_status dalle_clip_load(dalle_clip *m, dalle_backend *be, const dalle_clip_hparams *hp,
                             const char *path, dalle_error *err);
void dalle_clip_free(dalle_clip *m);

typedef struct {
    dalle_backend *be;
    int max_images;
    float *pixels;                // [B, S, S, 3]
    float *patches;               // [B, G, p·p·3]
    float *x, *h, *q, *k, *v, *a; // [rows, max(Cv, Ct)], rows = max(B·Tv, Tt)
    float *f;                     // [rows, max(Fv, Ft)]
    float *pooled;                // [B, max(Cv, Ct)]
    float *emb;                   // [B, E]
    int32_t *vision_ids;          // host [B·Tv]: token t of every image reads position t
    int32_t *text_pos;            // host [Tt]: 0, 1, …
} dalle_clip_work;

dalle_status dalle_clip_work_new(dalle_clip_work *w, const dalle_clip *m, dalle_backend *be,
                                 int max_images, dalle_error *err);
void dalle_clip_work_free(dalle_clip_work *w);

/* emb [B, E] = the image projections (not normalised) of pixels [B, S, S, 3], the
 * preprocessed NHWC images (model/image_prep.h): host memory, or w->pixels itself when the
 * caller wrote them there on the backend (ops.h clip_prep). 1 ≤ B ≤ max_images. */
void dalle_clip_image_embed(const dalle_clip *m, dalle_clip_work *w, const float *pixels, int B,
                            float *emb);

/* emb [E] = the text projection (not normalised) of ids [Tt] (SOT … EOT, padded), pooled
 * at the first EOT, i.e. the first position of the largest id. Only positions up to it are
 * computed (the mask is causal, so the rest cannot change it). An id outside the
 * vocabulary is DALLE_ERR_INVALID_ARG. */
dalle_status dalle_clip_text_embed(const dalle_clip *m, dalle_clip_work *w, const int32_t *ids,
                                   float *emb, dalle_error *err);

/* logits[b] = exp(logit_scale)·cos(img[b], txt) for img [B, E], txt [E] (0 when a vector is
 * zero); order[0..B-1] = image indexes by descending logit, ties by index. */
void dalle_clip_scores(const dalle_clip *m, const float *img, int B, const float *txt,
                       float *logits, int32_t *order);

#endif /* DALLE_MODEL_CLIP_H */
