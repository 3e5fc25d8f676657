/* test_cpu_gemm.c — the CPU GEMM core (kernels/cpu/linalg.c) on every variant this CPU runs
 * (portable always; avx2 and avx512 when cpuid has them, skipped otherwise):
 *  - row invariance per variant: each row of y has the same bits whatever M and wherever
 *    the row sits in x, for F32, F16 and BF16 weights;
 *  - every variant gives the portable variant's bits, packed or row-major weights alike;
 *  - 16-bit weights give exactly the F32 result on their widened values (widening is exact,
 *    the arithmetic is the same);
 *  - accumulate adds the product to y with one rounding (y + s);
 *  - the packed layout puts W[16p + j, k] at [p][k][j] with zero rows past N;
 *  - 16-bit results against a double reference (1e-5 of the largest value).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

static dalle_backend *be;

static void setup(void) {
    be = dalle_backend_cpu_new(2);
    cr_assert_not_null(be);
}

static void teardown(void) {
    be->ops->destroy(be);
}

TestSuite(cpu_gemm, .init = setup, .fini = teardown);

static uint64_t lcg_state;

static float frand(void) { /* uniform in [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg_state >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* Switches the backend to `name`; 0 when this CPU lacks it. */
static int use_variant(const char *name) {
    const dalle_cpu_gemm_variant *v = dalle_cpu_gemm_pick(name);
    if (!v)
        return 0;
    dalle_cpu_of(be)->gemm = v;
    return 1;
}

/* A weight [N, K] of dtype dt with random values (exactly representable in dt); its fp32
 * values in *f32 when asked. */
static void *weight_data(dalle_dtype dt, int N, int K, float **f32) {
    const size_t n = (size_t)N * K;
    void *w = malloc(n * dalle_dtype_size(dt));
    float *f = malloc(n * sizeof *f);
    cr_assert(w && f);
    for (size_t i = 0; i < n; i++) {
        const float v = frand();
        if (dt == DALLE_F32) {
            ((float *)w)[i] = f[i] = v;
        } else if (dt == DALLE_F16) {
            const _Float16 h = (_Float16)v;
            memcpy((uint16_t *)w + i, &h, 2);
            f[i] = (float)h;
        } else {
            uint32_t u;
            memcpy(&u, &v, 4);
            const uint16_t b = (uint16_t)(u >> 16);
            ((uint16_t *)w)[i] = b;
            u = (uint32_t)b << 16;
            memcpy(&f[i], &u, 4);
        }
    }
    if (f32)
        *f32 = f;
    else
        free(f);
    return w;
}

/* The weight as a tensor: packed into a new buffer when `packed`, else the data itself. */
static dalle_tensor weight_tensor(void *data, dalle_dtype dt, int N, int K, int packed) {
    dalle_tensor t = {.data = data, .dtype = dt, .ndim = 2, .packed = packed, .shape = {N, K}};
    if (packed) {
        t.data = malloc(dalle_cpu_pack_bytes(N, K, dt));
        cr_assert_not_null(t.data);
        dalle_cpu_pack(t.data, data, N, K, dt);
    }
    return t;
}

static float *frands(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
    return x;
}

static const dalle_dtype dtypes[3] = {DALLE_F32, DALLE_F16, DALLE_BF16};

/* Each row's bits do not depend on M or the row's position, on the named variant. */
static void rows_independent_of_m(const char *variant) {
    if (!use_variant(variant))
        cr_skip_test("this CPU has no %s", variant);
    const int N = 75, K = 1001, Mmax = 41;
    for (int d = 0; d < 3; d++) {
        lcg_state = 9 + d;
        float *x = frands((size_t)Mmax * K), *alone = frands(N), *y = frands((size_t)Mmax * N);
        void *raw = weight_data(dtypes[d], N, K, NULL);
        dalle_tensor w = weight_tensor(raw, dtypes[d], N, K, 1);
        for (int row = 0; row < Mmax; row += 7) {
            be->ops->matmul(be, alone, x + (size_t)row * K, &w, 1, N, K, 0);
            for (int M = 1; M <= Mmax; M++)
                for (int at = 0; at<M; at += M> 9 ? 4 : 1) {
                    const int first = row - at;
                    if (first < 0 || first + M > Mmax)
                        continue;
                    be->ops->matmul(be, y, x + (size_t)first * K, &w, M, N, K, 0);
                    cr_assert(memcmp(y + (size_t)at * N, alone, (size_t)N * sizeof *y) == 0,
                              "%s %s: row %d differs at position %d of M = %d", variant,
                              dalle_dtype_name(dtypes[d]), row, at, M);
                }
        }
        free(w.data);
        free(raw);
        free(x);
        free(alone);
        free(y);
    }
}

Test(cpu_gemm, rows_independent_of_m_portable) {
    rows_independent_of_m("portable");
}

Test(cpu_gemm, rows_independent_of_m_avx2) {
    rows_independent_of_m("avx2");
}

Test(cpu_gemm, rows_independent_of_m_avx512) {
    rows_independent_of_m("avx512");
}

/* y of every variant and layout equals the portable variant's, bit for bit. */
Test(cpu_gemm, variants_and_layouts_give_the_same_bits) {
    static const int shapes[][3] = {{1, 1, 1},    {1, 17, 7},  {2, 64, 1024},
                                    {3, 33, 65},  {5, 16, 19}, {6, 100, 64},
                                    {7, 31, 129}, {13, 48, 3}, {64, 96, 257}};
    static const char *names[] = {"portable", "avx2", "avx512"};
    int compared = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int d = 0; d < 3; d++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            lcg_state = 100 + s * 3 + d;
            float *x = frands((size_t)M * K), *ref = malloc((size_t)M * N * sizeof *ref);
            float *y = malloc((size_t)M * N * sizeof *y);
            void *raw = weight_data(dtypes[d], N, K, NULL);
            dalle_tensor packed = weight_tensor(raw, dtypes[d], N, K, 1);
            dalle_tensor rows = weight_tensor(raw, dtypes[d], N, K, 0);
            cr_assert(use_variant("portable"));
            be->ops->matmul(be, ref, x, &packed, M, N, K, 0);
            for (int v = 0; v < 3; v++) {
                if (!use_variant(names[v]))
                    continue;
                for (int layout = 0; layout < 2; layout++) {
                    memset(y, 0xff, (size_t)M * N * sizeof *y);
                    be->ops->matmul(be, y, x, layout ? &rows : &packed, M, N, K, 0);
                    cr_assert(memcmp(y, ref, (size_t)M * N * sizeof *y) == 0,
                              "%s %s %s M=%d N=%d K=%d differs from portable", names[v],
                              dalle_dtype_name(dtypes[d]), layout ? "row-major" : "packed", M, N,
                              K);
                    compared++;
                }
            }
            free(packed.data);
            free(raw);
            free(x);
            free(ref);
            free(y);
        }
    cr_assert_geq(compared, 2 * 27);
}

/* F16/BF16 weights: the same bits as F32 weights holding the widened values. */
Test(cpu_gemm, sixteen_bit_weights_equal_widened_f32) {
    const int M = 9, N = 70, K = 515;
    for (int d = 1; d < 3; d++) {
        lcg_state = 40 + d;
        float *x = frands((size_t)M * K), *wide = NULL;
        float *y16 = malloc((size_t)M * N * sizeof *y16),
              *y32 = malloc((size_t)M * N * sizeof *y32);
        void *raw = weight_data(dtypes[d], N, K, &wide);
        dalle_tensor w16 = weight_tensor(raw, dtypes[d], N, K, 1);
        dalle_tensor w32 = weight_tensor(wide, DALLE_F32, N, K, 1);
        be->ops->matmul(be, y16, x, &w16, M, N, K, 0);
        be->ops->matmul(be, y32, x, &w32, M, N, K, 0);
        cr_assert(memcmp(y16, y32, (size_t)M * N * sizeof *y16) == 0, "%s",
                  dalle_dtype_name(dtypes[d]));
        double worst = 0, big = 0; /* and close to a double reference */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)x[(size_t)m * K + k] * wide[(size_t)n * K + k];
                worst = fmax(worst, fabs(s - y16[(size_t)m * N + n]));
                big = fmax(big, fabs(s));
            }
        cr_assert_leq(worst, 1e-5 * big, "%s: %g of %g", dalle_dtype_name(dtypes[d]), worst, big);
        free(w16.data);
        free(w32.data);
        free(raw);
        free(wide);
        free(x);
        free(y16);
        free(y32);
    }
}

/* accumulate: y ← y + s, s the product computed alone (one rounding for the add). */
Test(cpu_gemm, accumulate_adds_the_product_once) {
    const int M = 4, N = 37, K = 200;
    lcg_state = 77;
    float *x = frands((size_t)M * K), *y0 = frands((size_t)M * N);
    float *y = malloc((size_t)M * N * sizeof *y), *s = malloc((size_t)M * N * sizeof *s);
    void *raw = weight_data(DALLE_F16, N, K, NULL);
    dalle_tensor w = weight_tensor(raw, DALLE_F16, N, K, 1);
    memcpy(y, y0, (size_t)M * N * sizeof *y);
    be->ops->matmul(be, y, x, &w, M, N, K, 1);
    be->ops->matmul(be, s, x, &w, M, N, K, 0);
    for (int i = 0; i < M * N; i++) {
        const float want = y0[i] + s[i];
        cr_assert(memcmp(&y[i], &want, sizeof want) == 0, "element %d", i);
    }
    free(w.data);
    free(raw);
    free(x);
    free(y0);
    free(y);
    free(s);
}

/* The packed layout: panel p, row k, lane j holds W[16p + j, k]; lanes past N are zero. */
Test(cpu_gemm, pack_layout) {
    const int N = 21, K = 5;
    uint16_t w[21 * 5];
    for (int i = 0; i < N * K; i++)
        w[i] = (uint16_t)(i + 1);
    cr_assert_eq(dalle_cpu_pack_bytes(N, K, DALLE_BF16), (size_t)2 * 16 * K * 2);
    uint16_t *p = malloc(dalle_cpu_pack_bytes(N, K, DALLE_BF16));
    dalle_cpu_pack(p, w, N, K, DALLE_BF16);
    for (int panel = 0; panel < 2; panel++)
        for (int k = 0; k < K; k++)
            for (int j = 0; j < 16; j++) {
                const int n = panel * 16 + j;
                const uint16_t want = n < N ? w[n * K + k] : 0;
                cr_assert_eq(p[(panel * K + k) * 16 + j], want, "panel %d k %d lane %d", panel, k,
                             j);
            }
    free(p);
}

/* The fastest variant is what a new backend uses, and the names resolve as documented. */
Test(cpu_gemm, variant_choice) {
    cr_assert_not_null(dalle_cpu_gemm_pick("portable"));
    cr_assert_null(dalle_cpu_gemm_pick("sse9"));
    cr_assert_eq(dalle_cpu_of(be)->gemm, dalle_cpu_gemm_pick(NULL));
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        !__builtin_cpu_supports("avx512f"))
        cr_assert_str_eq(dalle_cpu_gemm_pick(NULL)->name, "avx2");
#endif
}
