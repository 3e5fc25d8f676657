/* linalg.c — the CPU GEMM core: y[M, N] = x[M, K] · W[:N, :K]ᵀ (+ y) for every matmul and
 * convolution of the CPU backend (ops.h matmul, conv.c's GEMMs).
 *
 * Weights: F32, F16 or BF16, widened in registers (exact), arithmetic fp32. A weight is read
 * in panels of DALLE_CPU_PANEL rows of W interleaved over K (dalle_cpu_pack: panel p holds
 * W[16p + j, k] at [k, j], zero rows past N), so a tile streams its weights contiguously.
 * The model loader packs every matmul and conv weight once (ops.h pack); a row-major weight
 * is packed into a temporary buffer per call.
 *
 * Tiles (linalg_tile.h) are register-blocked outer products: up to TILE_MR rows of x times
 * one or two panels, one fused multiply-add per term. Three variants share that tile
 * source, chosen per backend at run time from cpuid: AVX-512 (16 lanes), AVX2 + FMA + F16C
 * (8 lanes) and portable C (fmaf; any architecture).
 *
 * Summation order and row invariance (dalle.h's batch promise): K is cut into segments
 * whose length depends on K alone (GEMM_KC for a matmul, Cin for a convolution's taps). Each
 * segment's sum starts at 0 and adds its terms in increasing k, one fused multiply-add each;
 * the segment sums are added in order, one rounding each; then + y when accumulating. That
 * order depends on nothing but K: not on M, the row's place in x, the tile shape, the thread
 * split, or the variant (fused multiply-add is exactly rounded everywhere). So an image's
 * rows give the same bits alone or batched, on every machine. Summing per segment also keeps
 * the rounding error of long sums (a VQGAN conv's K is 9·512) near a blocked BLAS's.
 *
 * x is read through row pointers (dalle_cpu_rows), segment by segment, so a convolution is
 * the same GEMM over pixels whose segments are its input taps, without an im2col matrix
 * (conv.c).
 *
 * Work split: items of (up to GEMM_MB rows, a group of panels) handed out dynamically to
 * the backend's threads (dalle_cpu_for). Inside an item the sums run segment by segment along K: a
 * segment's slice of a panel stays in L1 while every row tile of the item passes over it, the
 * partial sums wait in a block buffer, and y is written once at the end. A decode step (a few rows)
 * still reads each weight from memory once: an item's panels are consumed segment after
 * segment.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DALLE_GEMM_X86 1
#endif

#define GEMM_MB           96  /* rows of x per item at most (a multiple of each mr) */
#define GEMM_KC           256 /* K per segment of a matmul: fixes its summation order */
#define GEMM_GROUP_SMALL  2   /* panels per item, one row block */
#define GEMM_GROUP_LARGE  8   /* panels per item, several row blocks */
#define GEMM_PAR_MIN_MACS ((int64_t)1 << 16) /* below: one thread */
#define GEMM_PREFETCH     4096 /* bytes ahead in a panel that a tile asks the cache for */

/* ---- element loads (portable variant, dalle_cpu_widen) ---------------------------- */

static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return dalle_f16_to_f32(h);
}

static inline float load_bf16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return dalle_bf16_to_f32(h);
}

static inline float load_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

void dalle_cpu_widen(float *dst, const void *src, dalle_dtype dt, int64_t n, int add) {
    const uint8_t *s = src;
    const size_t es = dalle_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = s + (size_t)i * es;
        const float v = dt == DALLE_F32   ? load_f32(p)
                        : dt == DALLE_F16 ? load_f16(p)
                                          : load_bf16(p);
        dst[i] = add ? dst[i] + v : v;
    }
}

/* ---- the variants ------------------------------------------------------------------- */

#define TILE_TARGET
#define TILE_NAME(x)   portable_##x
#define TILE_LABEL     "portable"
#define VEC            float
#define VL             1
#define V_ZERO()       0.0f
#define V_SET1(f)      (f)
#define V_FMA(a, b, c) fmaf((a), (b), (c))
#define V_ADD(a, b)    ((a) + (b))
#define V_STORE(p, v)  (*(p) = (v))
#define V_LOAD_F32(p)  load_f32(p)
#define V_LOAD_F16(p)  load_f16(p)
#define V_LOAD_BF16(p) load_bf16(p)
#define TILE_MR        4
#define TILE_MR_WIDE   0
#include "kernels/cpu/linalg_tile.h"

#ifdef DALLE_GEMM_X86
#define TILE_TARGET    __attribute__((target("avx2,fma,f16c")))
#define TILE_NAME(x)   avx2_##x
#define TILE_LABEL     "avx2"
#define VEC            __m256
#define VL             8
#define V_ZERO()       _mm256_setzero_ps()
#define V_SET1(f)      _mm256_set1_ps(f)
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_ADD(a, b)    _mm256_add_ps((a), (b))
#define V_STORE(p, v)  _mm256_storeu_ps((p), (v))
#define V_LOAD_F32(p)  _mm256_loadu_ps((const float *)(p))
#define V_LOAD_F16(p)  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define V_LOAD_BF16(p)                                                                             \
    _mm256_castsi256_ps(                                                                           \
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define TILE_MR      6 /* 12 accumulators of 16: 6 rows × one panel */
#define TILE_MR_WIDE 2 /* 8 accumulators: 2 rows × two panels (one image's decode rows) */
#include "kernels/cpu/linalg_tile.h"

#define TILE_TARGET    __attribute__((target("avx512f")))
#define TILE_NAME(x)   avx512_##x
#define TILE_LABEL     "avx512"
#define VEC            __m512
#define VL             16
#define V_ZERO()       _mm512_setzero_ps()
#define V_SET1(f)      _mm512_set1_ps(f)
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_ADD(a, b)    _mm512_add_ps((a), (b))
#define V_STORE(p, v)  _mm512_storeu_ps((p), (v))
#define V_LOAD_F32(p)  _mm512_loadu_ps((const float *)(p))
#define V_LOAD_F16(p)  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define V_LOAD_BF16(p)                                                                             \
    _mm512_castsi512_ps(                                                                           \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define TILE_MR      8 /* 16 of 32 registers: 8 rows × two panels */
#define TILE_MR_WIDE 8
#include "kernels/cpu/linalg_tile.h"
#endif /* DALLE_GEMM_X86 */

#ifdef DALLE_GEMM_X86
/* F16C from cpuid leaf 1 (not every compiler's __builtin_cpu_supports knows it). */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

static int variant_supported(const dalle_cpu_gemm_variant *v) {
#ifdef DALLE_GEMM_X86
    if (v == &avx512_variant)
        return __builtin_cpu_supports("avx512f");
    if (v == &avx2_variant)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
#endif
    return v == &portable_variant;
}

/* Fastest first. */
static const dalle_cpu_gemm_variant *const variants[] = {
#ifdef DALLE_GEMM_X86
    &avx512_variant,
    &avx2_variant,
#endif
    &portable_variant,
};

const dalle_cpu_gemm_variant *dalle_cpu_gemm_pick(const char *name) {
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        const dalle_cpu_gemm_variant *v = variants[i];
        if ((!name || !*name || !strcmp(name, v->name)) && variant_supported(v))
            return v;
    }
    return NULL;
}

void dalle_cpu_gemm_names(char *out, size_t size) {
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof variants / sizeof *variants && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? " " : "", variants[i]->name);
}

/* ---- packing ------------------------------------------------------------------------- */

size_t dalle_cpu_pack_bytes(int64_t N, int64_t K, dalle_dtype dt) {
    const int64_t panels = (N + DALLE_CPU_PANEL - 1) / DALLE_CPU_PANEL;
    return (size_t)panels * DALLE_CPU_PANEL * (size_t)K * dalle_dtype_size(dt);
}

/* One panel: d[k, j] = rows[j][k] for j < nrows, 0 for the rows past N. */
#define PACK_PANEL(T)                                                                              \
    do {                                                                                           \
        T *restrict d = (T *)dst + (size_t)p * DALLE_CPU_PANEL * K; /* [K, 16] */                  \
        const T *rows[DALLE_CPU_PANEL];                                                            \
        for (int j = 0; j < nrows; j++)                                                            \
            rows[j] = (const T *)src + (size_t)(n0 + j) * K;                                       \
        for (int64_t k = 0; k < K; k++) {                                                          \
            T *e = d + (size_t)k * DALLE_CPU_PANEL;                                                \
            for (int j = 0; j < nrows; j++)                                                        \
                e[j] = rows[j][k];                                                                 \
            for (int j = nrows; j < DALLE_CPU_PANEL; j++)                                          \
                e[j] = 0;                                                                          \
        }                                                                                          \
    } while (0)

void dalle_cpu_pack(void *dst, const void *src, int64_t N, int64_t K, dalle_dtype dt) {
    const int64_t panels = (N + DALLE_CPU_PANEL - 1) / DALLE_CPU_PANEL;
#pragma omp parallel for if (N * K >= DALLE_CPU_PAR_MIN)
    for (int64_t p = 0; p < panels; p++) {
        const int64_t n0 = p * DALLE_CPU_PANEL;
        const int nrows = N - n0 < DALLE_CPU_PANEL ? (int)(N - n0) : DALLE_CPU_PANEL;
        if (dalle_dtype_size(dt) == 4)
            PACK_PANEL(uint32_t);
        else
            PACK_PANEL(uint16_t);
    }
}
#undef PACK_PANEL

size_t dalle_cpu_pack_weight_bytes(const dalle_tensor *t) {
    if (dalle_cpu_conv_winograd(t))
        return dalle_cpu_winograd_pack_bytes(t);
    return dalle_cpu_pack_bytes(t->shape[0], dalle_tensor_numel(t) / t->shape[0], t->dtype);
}

void dalle_cpu_pack_weight(void *dst, const void *src, const dalle_tensor *t) {
    if (dalle_cpu_conv_winograd(t))
        dalle_cpu_winograd_pack(dst, src, t);
    else
        dalle_cpu_pack(dst, src, t->shape[0], dalle_tensor_numel(t) / t->shape[0], t->dtype);
}

/* ---- the driver ---------------------------------------------------------------------- */

typedef struct {
    const dalle_cpu_gemm_variant *v;
    const dalle_cpu_rows *rows;
    float *y;
    const uint8_t *w; // packed panels
    size_t ldy, pbytes;
    int M, N, nseg, accumulate;
    dalle_dtype dt;
} gemm_job;

/* Rows [m0, m1) × panels [p0, p1): segment by segment along K (its slice of each panel stays
 * in L1 while every row tile passes over it), sums kept in part, then written to y. */
static void gemm_block(const gemm_job *j, int m0, int m1, int p0, int p1) {
    float part[GEMM_MB * GEMM_GROUP_LARGE * DALLE_CPU_PANEL]; // [rows, cols]
    const float *xt[DALLE_CPU_MAX_SEGS * GEMM_MB];            // [seg, rows]
    const dalle_cpu_gemm_variant *v = j->v;
    const dalle_cpu_rows *rows = j->rows;
    const size_t es = dalle_dtype_size(j->dt);
    const int nrows = m1 - m0, ldo = (p1 - p0) * DALLE_CPU_PANEL;
    DALLE_ASSERT(nrows <= GEMM_MB && p1 - p0 <= GEMM_GROUP_LARGE && v->mr <= 8);
    for (int m = m0; m < m1; m += 8)
        rows->get(rows, m, m1 - m < 8 ? m1 - m : 8, xt + (m - m0), GEMM_MB);
    const int wide = v->mr_wide == v->mr || nrows <= v->mr_wide;
    for (int seg = 0; seg < j->nseg; seg++) {
        const int k0 = seg * rows->seg_len;
        const int kc = rows->K - k0 < rows->seg_len ? rows->K - k0 : rows->seg_len;
        for (int p = p0; p < p1;) {
            const int np = wide && p + 1 < p1 ? 2 : 1, mr_max = np == 2 ? v->mr_wide : v->mr;
            const uint8_t *w = j->w + (size_t)p * j->pbytes + (size_t)k0 * DALLE_CPU_PANEL * es;
            for (int m = m0; m < m1; m += mr_max) {
                const int mr = m1 - m < mr_max ? m1 - m : mr_max;
                v->tile(part + (size_t)(m - m0) * ldo + (p - p0) * DALLE_CPU_PANEL, (size_t)ldo,
                        xt + seg * GEMM_MB + (m - m0), w, j->pbytes, kc, seg > 0, mr, np, j->dt);
            }
            p += np;
        }
    }
    const int n0 = p0 * DALLE_CPU_PANEL, nc = j->N - n0 < ldo ? j->N - n0 : ldo;
    for (int r = 0; r < nrows; r++) {
        float *yr = j->y + (size_t)(m0 + r) * j->ldy + n0; // [nc]
        const float *o = part + (size_t)r * ldo;
        if (j->accumulate)
            for (int c = 0; c < nc; c++)
                yr[c] += o[c];
        else
            memcpy(yr, o, (size_t)nc * sizeof *yr);
    }
}

/* The items of a GEMM: (a block of up to mb rows, a group of panels). */
typedef struct {
    const gemm_job *j;
    int M, panels, mb, group, groups;
} gemm_items;

static void gemm_item(void *ctx, int64_t i, int thread) {
    const gemm_items *it = ctx;
    (void)thread;
    const int b = (int)(i / it->groups), g = (int)(i % it->groups);
    const int m1 = (b + 1) * it->mb < it->M ? (b + 1) * it->mb : it->M;
    const int p1 = (g + 1) * it->group < it->panels ? (g + 1) * it->group : it->panels;
    gemm_block(it->j, b * it->mb, m1, g * it->group, p1);
}

void dalle_cpu_gemm_rows(dalle_backend *be, float *y, size_t ldy, const dalle_cpu_rows *rows,
                         const dalle_tensor *w, int M, int N, int accumulate) {
    const int K = rows->K;
    DALLE_ASSERT(w && w->data && w->ndim >= 2 && M >= 0 && N >= 1 && K >= 1);
    DALLE_ASSERT(w->dtype == DALLE_F32 || w->dtype == DALLE_F16 || w->dtype == DALLE_BF16);
    DALLE_ASSERT(N <= w->shape[0] && (int64_t)K * w->shape[0] == dalle_tensor_numel(w));
    DALLE_ASSERT(ldy >= (size_t)N && rows->seg_len >= 1);
    const int nseg = (K + rows->seg_len - 1) / rows->seg_len;
    DALLE_ASSERT(nseg <= DALLE_CPU_MAX_SEGS);
    if (M == 0)
        return;
    dalle_cpu *cpu = dalle_cpu_of(be);
    const size_t es = dalle_dtype_size(w->dtype);
    void *tmp = NULL;
    const uint8_t *wp = w->data;
    if (!w->packed) { // a row-major weight (tests, ad-hoc tensors): pack the rows used
        tmp = malloc(dalle_cpu_pack_bytes(N, K, w->dtype));
        DALLE_ASSERT(tmp);
        dalle_cpu_pack(tmp, w->data, N, K, w->dtype);
        wp = tmp;
    }
    const gemm_job j = {.v = cpu->gemm,
                        .rows = rows,
                        .y = y,
                        .w = wp,
                        .ldy = ldy,
                        .pbytes = (size_t)DALLE_CPU_PANEL * K * es,
                        .M = M,
                        .N = N,
                        .nseg = nseg,
                        .accumulate = accumulate,
                        .dt = w->dtype};
    const int panels = (N + DALLE_CPU_PANEL - 1) / DALLE_CPU_PANEL;
    const int mb = M < GEMM_MB ? M : GEMM_MB;
    const int group = M <= GEMM_MB ? GEMM_GROUP_SMALL : GEMM_GROUP_LARGE;
    const int blocks = (M + mb - 1) / mb, groups = (panels + group - 1) / group;
    gemm_items it = {.j = &j, .M = M, .panels = panels, .mb = mb, .group = group, .groups = groups};
    dalle_cpu_for(be, (int64_t)blocks * groups, (int64_t)M * N * K >= GEMM_PAR_MIN_MACS, gemm_item,
                  &it);
    free(tmp);
}

/* Rows of a dense row-major x: row m at x + m·ldx. */
typedef struct {
    dalle_cpu_rows base;
    const float *x;
    size_t ldx;
} dense_rows;

static void dense_get(const dalle_cpu_rows *rows, int m, int mr, const float **ptr, int stride) {
    const dense_rows *d = (const dense_rows *)rows;
    const int nseg = (rows->K + rows->seg_len - 1) / rows->seg_len;
    for (int seg = 0; seg < nseg; seg++)
        for (int r = 0; r < mr; r++)
            ptr[seg * stride + r] = d->x + (size_t)(m + r) * d->ldx + (size_t)seg * rows->seg_len;
}

void dalle_cpu_gemm(dalle_backend *be, float *y, size_t ldy, const float *x, size_t ldx,
                    const dalle_tensor *w, int M, int N, int K, int accumulate) {
    DALLE_ASSERT(K >= 1 && ldx >= (size_t)K);
    int seg_len = GEMM_KC; /* a function of K only: the summation order (above) */
    if (seg_len < (K + DALLE_CPU_MAX_SEGS - 1) / DALLE_CPU_MAX_SEGS)
        seg_len = (K + DALLE_CPU_MAX_SEGS - 1) / DALLE_CPU_MAX_SEGS;
    const dense_rows rows = {
        .base = {.get = dense_get, .K = K, .seg_len = seg_len}, .x = x, .ldx = ldx};
    dalle_cpu_gemm_rows(be, y, ldy, &rows.base, w, M, N, accumulate);
}

void dalle_cpu_matmul(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                      int N, int K, int accumulate) {
    DALLE_ASSERT(w && w->ndim == 2 && K == w->shape[1]);
    dalle_cpu_gemm(be, y, (size_t)N, x, (size_t)K, w, M, N, K, accumulate); // [M, N]
}
