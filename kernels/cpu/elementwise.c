/* elementwise.c — CPU gathers and element-wise ops: embedding (+ position) gather, patchify,
 * nearest ×2 upsample, GELU-GLU middle (exact erf GELU: 0.5·a·(1 + erf(a/√2))·b, evaluated as
 * 0.5·a·erfc(−a/√2)·b, which keeps its relative accuracy for negative a where 1 + erf cancels),
 * CLIP's quick GELU, bias broadcast and residual add.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

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
    const int threads = dalle_cpu_of(be)->threads;
#pragma omp parallel for num_threads(threads) if ((int64_t)rows * C >= DALLE_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *o = y + (size_t)r * C; // [rows, C]
        dalle_cpu_widen(o, (const uint8_t *)table->data + (size_t)ids[r] * C * es, table->dtype, C,
                        0);
        if (pos_table)
            dalle_cpu_widen(o, (const uint8_t *)pos_table->data + (size_t)pos[r] * C * pes,
                            pos_table->dtype, C, 1);
    }
}

void dalle_cpu_patchify(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C,
                        int p) {
    DALLE_ASSERT(B >= 0 && C >= 1 && p >= 1 && H >= p && W >= p && H % p == 0 && W % p == 0);
    const int ph = H / p, pw = W / p, threads = dalle_cpu_of(be)->threads;
    const size_t seg = (size_t)p * C; /* one patch row: p pixels × C, contiguous in NHWC */
    const int64_t n = (int64_t)B * H * W * C;
#pragma omp parallel for collapse(2) num_threads(threads) if (n >= DALLE_CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int py = 0; py < ph; py++) {
            const float *band = x + ((size_t)b * H + (size_t)py * p) * W * C; // [p, W, C]
            float *out = y + ((size_t)b * ph + py) * pw * p * seg;            // [pw, p·p·C]
            for (int px = 0; px < pw; px++)
                for (int dy = 0; dy < p; dy++)
                    memcpy(out + ((size_t)px * p + dy) * seg,
                           band + ((size_t)dy * W + (size_t)px * p) * C, seg * sizeof *out);
        }
}

void dalle_cpu_gelu_mul(dalle_backend *be, float *y, const float *a, const float *b, int64_t n) {
    DALLE_ASSERT(n >= 0);
    const int threads = dalle_cpu_of(be)->threads;
    const float rsqrt2 = 0.70710678118654752f;
#pragma omp parallel for num_threads(threads) if (n >= DALLE_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = 0.5f * a[i] * erfcf(-a[i] * rsqrt2) * b[i];
}

void dalle_cpu_quick_gelu(dalle_backend *be, float *y, const float *x, int64_t n) {
    DALLE_ASSERT(n >= 0);
    const int threads = dalle_cpu_of(be)->threads;
#pragma omp parallel for num_threads(threads) if (n >= DALLE_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void dalle_cpu_bias_add(dalle_backend *be, float *y, const dalle_tensor *bias, int rows, int N) {
    const float *restrict b = dalle_cpu_f32(bias); // [N]
    DALLE_ASSERT(rows >= 0 && N >= 1 && dalle_tensor_numel(bias) == N);
    const int threads = dalle_cpu_of(be)->threads;
#pragma omp parallel for num_threads(threads) if ((int64_t)rows * N >= DALLE_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *restrict o = y + (size_t)r * N; // [rows, N]
#pragma omp simd
        for (int c = 0; c < N; c++)
            o[c] += b[c];
    }
}

void dalle_cpu_add(dalle_backend *be, float *y, const float *x, int64_t n) {
    DALLE_ASSERT(n >= 0);
    const int threads = dalle_cpu_of(be)->threads;
#pragma omp parallel for simd num_threads(threads) if (n >= DALLE_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void dalle_cpu_upsample2x(dalle_backend *be, float *y, const float *x, int B, int H, int W, int C) {
    DALLE_ASSERT(B >= 0 && H >= 1 && W >= 1 && C >= 1 && y != x);
    const int threads = dalle_cpu_of(be)->threads;
    const size_t in_row = (size_t)W * C, out_row = 2 * in_row, px = (size_t)C * sizeof(float);
    const int64_t rows = (int64_t)B * H;
    // input row r = b·H + h becomes output rows b·2H + 2h = 2r and 2r + 1
#pragma omp parallel for num_threads(threads) if (rows * (int64_t)out_row >= DALLE_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + (size_t)r * in_row;  // [W, C]
        float *dst = y + (size_t)(2 * r) * out_row; // [2, 2W, C]
        for (int w = 0; w < W; w++) {
            memcpy(dst + (size_t)(2 * w) * C, src + (size_t)w * C, px);
            memcpy(dst + (size_t)(2 * w + 1) * C, src + (size_t)w * C, px);
        }
        memcpy(dst + out_row, dst, out_row * sizeof(float));
    }
}
