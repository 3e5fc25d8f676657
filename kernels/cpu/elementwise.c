/* elementwise.c — CPU gathers and element-wise ops: embedding (+ position) gather, patchify,
 * nearest ×2 upsample, GELU-GLU middle (exact erf GELU: 0.5·a·(1 + erf(a/√2))·b, evaluated as
 * 0.5·a·erfc(−a/√2)·b, which keeps its relative accuracy for negative a where 1 + erf cancels),
 * CLIP's quick GELU, bias broadcast and residual add.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

/* Elements per item of the element-wise ops. */
#define ELEM_BLOCK 4096

typedef struct {
    float *y;
    const dalle_tensor *table, *pos_table;
    const int32_t *ids, *pos;
    int C;
    size_t es, pes;
} embed_args;

static void embed_item(void *ctx, int64_t r, int thread) {
    const embed_args *a = ctx;
    (void)thread;
    float *o = a->y + (size_t)r * a->C; // [rows, C]
    dalle_cpu_widen(o, (const uint8_t *)a->table->data + (size_t)a->ids[r] * a->C * a->es,
                    a->table->dtype, a->C, 0);
    if (a->pos_table)
        dalle_cpu_widen(o, (const uint8_t *)a->pos_table->data + (size_t)a->pos[r] * a->C * a->pes,
                        a->pos_table->dtype, a->C, 1);
}

void dalle_cpu_embed(dalle_backend *be, float *y, const dalle_tensor *table, const int32_t *ids,
                     const dalle_tensor *pos_table, const int32_t *pos, int rows, int C) {
    DALLE_ASSERT(table && table->data && !table->packed && table->ndim == 2 &&
                 table->shape[1] == C); // [V, C]
    DALLE_ASSERT(!pos_table || (pos_table->data && !pos_table->packed && pos_table->ndim == 2 &&
                                pos_table->shape[1] == C)); // [P, C]
    DALLE_ASSERT(rows >= 0 && C >= 1);
    for (int r = 0; r < rows; r++) {
        DALLE_ASSERT(ids[r] >= 0 && ids[r] < table->shape[0]);
        DALLE_ASSERT(!pos_table || (pos[r] >= 0 && pos[r] < pos_table->shape[0]));
    }
    const size_t es = dalle_dtype_size(table->dtype);
    const size_t pes = pos_table ? dalle_dtype_size(pos_table->dtype) : 0;
    embed_args a = {.y = y,
                    .table = table,
                    .ids = ids,
                    .pos_table = pos_table,
                    .pos = pos,
                    .C = C,
                    .es = es,
                    .pes = pes};
    dalle_cpu_for(be, rows, (int64_t)rows * C >= DALLE_CPU_PAR_MIN, embed_item, &a);
}

typedef struct {
    float *y;
    const float *x;
    int H, W, C, p, ph, pw;
} patchify_args;

/* Item b·ph + py: the patch row py of image b. */
static void patchify_item(void *ctx, int64_t item, int thread) {
    const patchify_args *a = ctx;
    (void)thread;
    const int p = a->p, W = a->W, C = a->C, pw = a->pw;
    const int64_t b = item / a->ph, py = item % a->ph;
    const size_t seg = (size_t)p * C; /* one patch row: p pixels × C, contiguous in NHWC */
    const float *band = a->x + ((size_t)b * a->H + (size_t)py * p) * W * C; // [p, W, C]
    float *out = a->y + (size_t)item * pw * p * seg;                        // [pw, p·p·C]
    for (int px = 0; px < pw; px++)
        for (int dy = 0; dy < p; dy++)
            memcpy(out + ((size_t)px * p + dy) * seg, band + ((size_t)dy * W + (size_t)px * p) * C,
                   seg * sizeof *out);
}

void dalle_cpu_patchify(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C,
                        int p) {
    DALLE_ASSERT(B >= 0 && C >= 1 && p >= 1 && H >= p && W >= p && H % p == 0 && W % p == 0);
    patchify_args a = {.y = y, .x = x, .H = H, .W = W, .C = C, .p = p, .ph = H / p, .pw = W / p};
    const int64_t n = (int64_t)B * H * W * C;
    dalle_cpu_for(be, (int64_t)B * a.ph, n >= DALLE_CPU_PAR_MIN, patchify_item, &a);
}

typedef enum { ELEM_GELU_MUL, ELEM_QUICK_GELU, ELEM_ADD } elem_kind;

typedef struct {
    elem_kind kind;
    float *y;
    const float *a, *b;
    int64_t n;
} elem_args;

/* Elements [i·ELEM_BLOCK, (i + 1)·ELEM_BLOCK) of an element-wise op. */
static void elem_item(void *ctx, int64_t i, int thread) {
    const elem_args *e = ctx;
    (void)thread;
    const float *a = e->a, *b = e->b; /* y may be a (in place) */
    float *y = e->y;
    const int64_t lo = i * ELEM_BLOCK, hi = lo + ELEM_BLOCK < e->n ? lo + ELEM_BLOCK : e->n;
    const float rsqrt2 = 0.70710678118654752f;
    switch (e->kind) {
    case ELEM_GELU_MUL:
        for (int64_t k = lo; k < hi; k++)
            y[k] = 0.5f * a[k] * erfcf(-a[k] * rsqrt2) * b[k];
        break;
    case ELEM_QUICK_GELU:
        for (int64_t k = lo; k < hi; k++)
            y[k] = a[k] / (1.0f + expf(-1.702f * a[k]));
        break;
    case ELEM_ADD:
#pragma omp simd
        for (int64_t k = lo; k < hi; k++)
            y[k] += a[k];
        break;
    }
}

/* y[n] = op(a[n], b[n]) in blocks of ELEM_BLOCK. */
static void elem_run(dalle_backend *be, elem_kind kind, float *y, const float *a, const float *b,
                     int64_t n) {
    DALLE_ASSERT(n >= 0);
    elem_args e = {.kind = kind, .y = y, .a = a, .b = b, .n = n};
    dalle_cpu_for(be, (n + ELEM_BLOCK - 1) / ELEM_BLOCK, n >= DALLE_CPU_PAR_MIN, elem_item, &e);
}

void dalle_cpu_gelu_mul(dalle_backend *be, float *y, const float *a, const float *b, int64_t n) {
    elem_run(be, ELEM_GELU_MUL, y, a, b, n);
}

void dalle_cpu_quick_gelu(dalle_backend *be, float *y, const float *x, int64_t n) {
    elem_run(be, ELEM_QUICK_GELU, y, x, NULL, n);
}

typedef struct {
    float *y;
    const float *x;
    int64_t N;
} rows_args;

static void bias_add_item(void *ctx, int64_t r, int thread) {
    const rows_args *a = ctx;
    (void)thread;
    const float *restrict b = a->x;
    float *restrict o = a->y + r * a->N; // [rows, N]
#pragma omp simd
    for (int64_t c = 0; c < a->N; c++)
        o[c] += b[c];
}

void dalle_cpu_bias_add(dalle_backend *be, float *y, const dalle_tensor *bias, int rows, int N) {
    DALLE_ASSERT(rows >= 0 && N >= 1 && dalle_tensor_numel(bias) == N);
    rows_args a = {.y = y, .x = dalle_cpu_f32(bias), .N = N}; // bias [N]
    dalle_cpu_for(be, rows, (int64_t)rows * N >= DALLE_CPU_PAR_MIN, bias_add_item, &a);
}

void dalle_cpu_add(dalle_backend *be, float *y, const float *x, int64_t n) {
    elem_run(be, ELEM_ADD, y, x, NULL, n);
}

typedef struct {
    float *y;
    const float *x;
    int W, C;
} upsample_args;

/* Input row r = b·H + h ([W, C]) becomes output rows b·2H + 2h = 2r and 2r + 1. */
static void upsample_item(void *ctx, int64_t r, int thread) {
    const upsample_args *a = ctx;
    (void)thread;
    const int W = a->W, C = a->C;
    const size_t in_row = (size_t)W * C, out_row = 2 * in_row, px = (size_t)C * sizeof(float);
    const float *src = a->x + (size_t)r * in_row;  // [W, C]
    float *dst = a->y + (size_t)(2 * r) * out_row; // [2, 2W, C]
    for (int w = 0; w < W; w++) {
        memcpy(dst + (size_t)(2 * w) * C, src + (size_t)w * C, px);
        memcpy(dst + (size_t)(2 * w + 1) * C, src + (size_t)w * C, px);
    }
    memcpy(dst + out_row, dst, out_row * sizeof(float));
}

void dalle_cpu_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && C >= 1 && y != x);
    upsample_args a = {.y = y, .x = x, .W = W, .C = C};
    const int64_t rows = (int64_t)B * H;
    dalle_cpu_for(be, rows, rows * 4 * W * C >= DALLE_CPU_PAR_MIN, upsample_item, &a);
}
