/* bart.h — the DalleBart text encoder and image-token decoder (docs/model-spec.md §2), written
 * once against the backend seam.
 *
 * Contract: dalle_bart (weights + hparams) is read-only after dalle_bart_load. A
 * dalle_bart_work holds everything one worker writes: activations for at most
 * `max_rows` decoder rows and `max_seqs` encoder sequences, the self-attention KV cache
 * (`max_rows` slots of image_length positions) and the cross-attention K/V blocks
 * (`max_blocks` blocks of text_length positions). Sizes come from the hparams and these
 * three numbers only; nothing is allocated per call.
 *
 * Dimension letters: S encoder sequences, T text_length, R decoder rows (2 per image:
 * conditional, unconditional), C d_model, F glu_dim, V logits columns, P positions.
 */
#ifndef DALLE_MODEL_BART_H
#define DALLE_MODEL_BART_H

#include "kernels/ops.h"
#include "model_loader/model_config.h"
#include "model_loader/safetensors.h"

typedef struct {
    dalle_tensor pre_self_ln_b;          // [C]  bias-only LN
    dalle_tensor q, k, v, o;             // [C, C]
    dalle_tensor self_ln_g, self_ln_b;   // [C]
    dalle_tensor pre_cross_ln_b;         // [C]  decoder only
    dalle_tensor cq, ck, cv, co;         // [C, C] decoder only
    dalle_tensor cross_ln_g, cross_ln_b; // [C]  decoder only
    dalle_tensor glu_ln0_b;              // [C]
    dalle_tensor fc0, fc1;               // [F, C]
    dalle_tensor glu_ln1_b;              // [F]
    dalle_tensor fc2;                    // [C, F]
} dalle_bart_layer;

typedef struct {
    dalle_tensor embed;              // [vocab, C]
    dalle_tensor pos;                // [P, C]
    dalle_tensor emb_ln_g, emb_ln_b; // [C]
    dalle_tensor final_ln_b;         // [C]
    dalle_bart_layer *layers;
    int n_layers;
} dalle_bart_stack;

typedef struct {
    dalle_bart_hparams hp;
    dalle_bart_stack enc, dec;
    dalle_tensor lm_head; // [lm_head_size, C]
    void *block_enc, *block_dec;
    size_t weight_bytes; /* both blocks */
    dalle_backend *be;   // the backend that owns the weight blocks
} dalle_bart;

dalle_status dalle_bart_load(dalle_bart *m, dalle_backend *be, const dalle_bart_hparams *hp,
                             const char *encoder_path, const char *decoder_path, dalle_error *err);
void dalle_bart_free(dalle_bart *m);

#define DALLE_BART_GRAPHS 24 /* recorded decode steps: one per power-of-two row bucket */

typedef struct {
    int max_seqs, max_rows, max_blocks;
    int rows_cap; // decoder rows the buffers hold: max_rows rounded up to 2^k
    dalle_backend *be;
    float *x, *h, *q, *k, *v, *a;   // [max(S·T, rows_cap), C]
    float *g, *u;                   // [max(S·T, rows_cap), F]
    float *logits;                  // [rows_cap, lm_head_size]
    void **self_k, **self_v;        // per decoder layer: [max_rows + 1, image_length, C] of
                                    // kv_dtype; slot max_rows takes the padding rows' K/V
    float **cross_k, **cross_v;     // per decoder layer: [max_blocks, text_length, C]
    uint8_t *cross_mask;            // host [max_blocks, text_length]
    uint8_t *cross_mask_dev;        // backend copy of cross_mask
    int32_t *pos_host;              // host [max_seqs·T] encoder positions
    int32_t *step_host, *step_dev;  // host / backend [4, rows_cap]: token, pos, slot, block
    int32_t *codes_dev;             // backend [max_rows, image_length]: sampled codes by slot
    void *graph[DALLE_BART_GRAPHS]; // recorded decode step per bucket (backend handle)
    int graph_rows[DALLE_BART_GRAPHS], graph_logits[DALLE_BART_GRAPHS];
    uint8_t graph_warm[DALLE_BART_GRAPHS]; // bucket ran eagerly once (scratch grown)
    int no_graph;       // the backend records nothing (or recording kept failing)
    int graph_failures; // recordings that failed
    int n_layers_;      // decoder layers the per-layer arrays hold
} dalle_bart_work;

dalle_status dalle_bart_work_new(dalle_bart_work *w, const dalle_bart *m, dalle_backend *be,
                                 int max_seqs, int max_rows, int max_blocks, dalle_error *err);
void dalle_bart_work_free(dalle_bart_work *w);

/* Encoder over S ≤ max_seqs sequences. ids, mask: host [S, T]. out: backend [S, T, C]
 * (the final_ln output). */
void dalle_bart_encode(const dalle_bart *m, dalle_bart_work *w, const int32_t *ids,
                       const uint8_t *mask, int S, float *out);

/* Project one encoder output [T, C] (backend) into cross-attention K/V block `block` of
 * every decoder layer, with its text mask (host [T]). */
void dalle_bart_cross_kv(const dalle_bart *m, dalle_bart_work *w, const float *enc_out,
                         const uint8_t *mask, int block);

/* One decoder step for R ≤ max_rows rows: row r feeds token[r] at position pos[r], uses
 * self-attention cache slot slot[r] (positions 0..pos[r] must already be filled for
 * 0..pos[r]-1) and cross block block[r]. Writes logits for the first n_logits columns to
 * w->logits ([R, n_logits]). All arrays are host [R]. token NULL: the token ids are already
 * in w->step_dev rows [0, R) (put there by the backend's sample_dev after the previous step,
 * or copied there by the caller), and nothing about them is uploaded.
 * On a backend with the device-index ops (ops.h embed_dev, decode_attention,
 * cross_attention) the step reads its indices from w->step_dev, uploaded once per step;
 * on one that also records (graph_*), R is padded to a power of two (padding rows use
 * KV slot max_rows and block 0, their logits are ignored) and the step is recorded once
 * per bucket after one eager run, then replayed. */
void dalle_bart_decode_step(const dalle_bart *m, dalle_bart_work *w, const int32_t *token,
                            const int32_t *pos, const int32_t *slot, const int32_t *block, int R,
                            int n_logits);

#endif /* DALLE_MODEL_BART_H */
