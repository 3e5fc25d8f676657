/* vqgan.h — the VQGAN decoder ("detokenizer", docs/model-spec.md §5), written once against the
 * backend seam: a grid of image codes → float pixels → uint8 pixels.
 *
 * Contract: every size comes from the "vqgan" section of config.json
 * (dalle_vqgan_hparams_parse), so the f16 16384 model and the tiny test model run the same
 * code. dalle_vqgan (weights + hparams) is read-only after dalle_vqgan_load. A
 * dalle_vqgan_work holds everything one worker writes, sized at creation for at most
 * `max_batch` images; nothing is allocated per call. Codes are validated (an out-of-range
 * code is an input error, not a crash).
 *
 * Dimension letters: B images, L latent side (codes per image = L·L, raster order), E
 * embed_dim, Z z_channels, C channels of the current map, R output resolution, O out_ch.
 * Feature maps are NHWC: [B, H, W, C]. Levels are numbered as in taming-transformers:
 * level 0 is the full resolution R, level i works at R >> i; decoding walks them from
 * n_levels − 1 down to 0.
 */
#ifndef DALLE_MODEL_VQGAN_H
#define DALLE_MODEL_VQGAN_H

#include <stdint.h>

#include "kernels/ops.h"

#define DALLE_VQGAN_MAX_LEVELS 8

typedef struct {
    int codebook_size; /* codes: 16384 for VQGAN f16 16384 */
    int embed_dim;     /* E: codebook vector size */
    int z_channels;    /* Z: post_quant_conv output, conv_in input */
    int ch;            /* base channel count; level i has ch · ch_mult[i] */
    int n_levels;      /* entries of ch_mult */
    int ch_mult[DALLE_VQGAN_MAX_LEVELS];
    int num_res_blocks;                           /* each level has num_res_blocks + 1 ResBlocks */
    int n_attn;                                   /* entries of attn_resolutions */
    int attn_resolutions[DALLE_VQGAN_MAX_LEVELS]; /* levels (by resolution) with AttnBlocks */
    int resolution;                               /* R */
    int out_ch;                                   /* O: 3 (RGB) */
    int groups;                                   /* GroupNorm groups: 32 */
    float eps;  /* GroupNorm ε: 1e-6 taming / VQGAN-JAX, 1e-5 min-dalle */
    int latent; /* derived: L = R >> (n_levels − 1) */
} dalle_vqgan_hparams;

/* Parse and validate the "vqgan" section (JSON object text). Errors are DALLE_ERR_FORMAT,
 * one line starting with `label` and naming the key (vqgan.<key>): missing or unknown
 * keys, types, ranges, groups not dividing a level's channels, a resolution that is not a
 * multiple of 2^(n_levels − 1), attention at a resolution no level has. */
dalle_status dalle_vqgan_hparams_parse(dalle_vqgan_hparams *hp, const char *json, const char *label,
                                       dalle_error *err);

typedef struct {
    dalle_tensor w; // [Cout, k, k, Cin]
    dalle_tensor b; // [Cout]
} dalle_vqgan_conv;

typedef struct {
    dalle_tensor g, b; // [C]
} dalle_vqgan_norm;

/* h = conv2(swish(norm2(conv1(swish(norm1(x)))))); out = (nin(x) or x) + h */
typedef struct {
    int cin, cout;
    dalle_vqgan_norm norm1, norm2;
    dalle_vqgan_conv conv1, conv2; // 3×3
    dalle_vqgan_conv nin;          // 1×1, only when cin != cout
} dalle_vqgan_resblock;

/* out = x + proj(softmax(q·kᵀ/√C)·v), q, k, v = 1×1 convs of norm(x); one head */
typedef struct {
    int C;
    dalle_vqgan_norm norm;
    dalle_vqgan_conv q, k, v, proj;
} dalle_vqgan_attn;

typedef struct {
    int res;                      // resolution >> level
    dalle_vqgan_resblock *blocks; // [num_res_blocks + 1]
    dalle_vqgan_attn *attn;       // [num_res_blocks + 1] or NULL
    dalle_vqgan_conv upsample;    // 3×3 after the ×2 nearest upsample; levels > 0 only
} dalle_vqgan_level;

typedef struct {
    dalle_vqgan_hparams hp;
    dalle_tensor codebook;       // [codebook_size, E]
    dalle_vqgan_conv post_quant; // 1×1, E → Z
    dalle_vqgan_conv conv_in;    // 3×3, Z → ch · ch_mult[n_levels − 1]
    dalle_vqgan_resblock mid1, mid2;
    dalle_vqgan_attn mid_attn;
    dalle_vqgan_level *levels; // [n_levels]
    dalle_vqgan_norm norm_out; // [ch · ch_mult[0]]
    dalle_vqgan_conv conv_out; // 3×3, ch · ch_mult[0] → O
    void *block;               // the one weight allocation
    size_t weight_bytes;       // its size
    dalle_backend *be;         // the backend that owns it
} dalle_vqgan;

/* Parse `config_json` (the raw "vqgan" section; NULL = the section is missing) and upload
 * the weights of `weights_path` (safetensors, min-dalle detokenizer names,
 * docs/model-spec.md §7.2: embedding.weight, post_quant_conv.*, decoder.*) onto `be`. Every tensor
 * of the file must be used and have the shape the config implies. */
dalle_status dalle_vqgan_load(dalle_vqgan *m, dalle_backend *be, const char *config_json,
                              const char *label, const char *weights_path, dalle_error *err);
void dalle_vqgan_free(dalle_vqgan *m);

typedef struct {
    int max_batch;
    dalle_backend *be;
    float *x, *t, *u;   // [max_batch · largest map] feature maps, rotated during a decode
    float *k, *v;       // [max_batch · largest attention map]
    float *image;       // [max_batch, R, R, O] decode output
    uint8_t *rgb;       // [max_batch, R, R, O] pixels of the last dalle_vqgan_read_u8
    int32_t *nonfinite; // [1] the to_rgb8 flag
    float *host;        // host [max_batch, R, R, O] staging when the floats are needed
} dalle_vqgan_work;

dalle_status dalle_vqgan_work_new(dalle_vqgan_work *w, const dalle_vqgan *m, dalle_backend *be,
                                  int max_batch, dalle_error *err);
void dalle_vqgan_work_free(dalle_vqgan_work *w);

/* Decode B (1 ≤ B ≤ max_batch) images: codes is host [B, L·L]. A code outside
 * [0, codebook_size) returns DALLE_ERR_INVALID_ARG naming image, position and value, and
 * nothing is computed. Otherwise w->image[0..B) holds the float output before clipping,
 * [B, R, R, O] in backend memory. */
dalle_status dalle_vqgan_decode(const dalle_vqgan *m, dalle_vqgan_work *w, const int32_t *codes,
                                int B, dalle_error *err);

/* pixels[i] = (uint8_t)(clip(x[i], 0, 1) · 255) in fp32, truncated like both references
 * (docs/model-spec.md §5.3); NaN → 0. Host arrays of n values. */
void dalle_vqgan_to_u8(uint8_t *pixels, const float *x, size_t n);

/* The first B decoded images as uint8 HWC pixels (RGB for O = 3): host [B, R, R, O], and
 * the same bytes in w->rgb (backend memory, for CLIP preprocessing on the device). Converted
 * on the backend (ops.h to_rgb8) when it can, so only the bytes come back. Returns the
 * first image holding a NaN or ±inf decoder output, or -1 when all are finite. */
int dalle_vqgan_read_u8(const dalle_vqgan *m, dalle_vqgan_work *w, int B, uint8_t *pixels);

#endif /* DALLE_MODEL_VQGAN_H */
