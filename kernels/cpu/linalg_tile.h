/* linalg_tile.h — one instruction set's GEMM tile, included by linalg.c once per variant.
 *
 * The includer defines (and this file undefines at its end):
 *   TILE_TARGET        function attribute selecting the instruction set (empty: portable C)
 *   TILE_NAME(x)       the variant's symbol for x; TILE_LABEL its name (a string)
 *   VEC, VL            the vector type and its float lanes (VL divides DALLE_CPU_PANEL)
 *   V_ZERO() V_SET1(f) V_FMA(a, b, c) (a·b + c, one rounding) V_ADD(a, b) V_STORE(p, v)
 *   V_LOAD_F32(p) V_LOAD_F16(p) V_LOAD_BF16(p)   VL weights at p, widened to fp32
 *   TILE_MR            most rows of x per tile
 *   TILE_MR_WIDE       most rows for which a tile spans two panels (0: never)
 *
 * Contract: TILE_NAME(tile) computes, for r < mr and c < DALLE_CPU_PANEL·np,
 *   t = Σ_{k<K} xr[r][k] · w(c, k),  out[r·ldo + c] = load ? out[r·ldo + c] + t : t
 * where w(c, k) is element c mod 16 of row k of panel c / 16 (panels pbytes apart, elements
 * of dtype dt). t starts at 0 and adds the terms in increasing k, each with one fused
 * multiply-add, so every variant and every tile shape gives each output the same bits; a
 * longer product is summed segment by segment (`load`), one rounded add per segment.
 * The tile prefetches each panel GEMM_PREFETCH bytes ahead of its reads (linalg.c): a
 * decode step's weights stream from memory while the FMAs run (no effect on the result).
 */

#define TILE_NVP (DALLE_CPU_PANEL / VL) /* vectors per panel row */

static inline __attribute__((always_inline)) TILE_TARGET void
TILE_NAME(tile_body)(float *restrict out, size_t ldo, const float *const *restrict xr,
                     const uint8_t *restrict w, size_t pbytes, int K, int load, const int mr,
                     const int np, const dalle_dtype dt) {
    const size_t es = dt == DALLE_F32 ? 4 : 2;
    VEC acc[TILE_MR][2 * TILE_NVP]; // [mr, np·16 / VL]
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 16
        for (int v = 0; v < np * TILE_NVP; v++)
            acc[r][v] = V_ZERO();
    for (int k = 0; k < K; k++) {
        VEC wv[2 * TILE_NVP];
        if (es == 4 || !(k & 1)) /* a cache line holds one k of fp32, two of 16 bits */
#pragma GCC unroll 2
            for (int q = 0; q < np; q++)
                __builtin_prefetch(w + (size_t)q * pbytes + (size_t)k * DALLE_CPU_PANEL * es +
                                       GEMM_PREFETCH,
                                   0, 3);
#pragma GCC unroll 16
        for (int v = 0; v < np * TILE_NVP; v++) {
            const uint8_t *p = w + (size_t)(v / TILE_NVP) * pbytes +
                               ((size_t)k * DALLE_CPU_PANEL + (size_t)(v % TILE_NVP) * VL) * es;
            wv[v] = dt == DALLE_F32   ? V_LOAD_F32(p)
                    : dt == DALLE_F16 ? V_LOAD_F16(p)
                                      : V_LOAD_BF16(p);
        }
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            const VEC xb = V_SET1(xr[r][k]);
#pragma GCC unroll 16
            for (int v = 0; v < np * TILE_NVP; v++)
                acc[r][v] = V_FMA(xb, wv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 16
        for (int v = 0; v < np * TILE_NVP; v++)
            V_STORE(out + r * ldo + v * VL,
                    load ? V_ADD(V_LOAD_F32((const uint8_t *)(out + r * ldo + v * VL)), acc[r][v])
                         : acc[r][v]);
}

/* One instantiation per (rows, panels, dtype): constant trip counts keep acc in registers. */
#define TILE_CASE(MR_, NP_)                                                                        \
    case MR_ * 4 + NP_:                                                                            \
        if (dt == DALLE_F32)                                                                       \
            TILE_NAME(tile_body)(out, ldo, xr, w, pbytes, K, load, MR_, NP_, DALLE_F32);           \
        else if (dt == DALLE_F16)                                                                  \
            TILE_NAME(tile_body)(out, ldo, xr, w, pbytes, K, load, MR_, NP_, DALLE_F16);           \
        else                                                                                       \
            TILE_NAME(tile_body)(out, ldo, xr, w, pbytes, K, load, MR_, NP_, DALLE_BF16);          \
        return;

static TILE_TARGET void TILE_NAME(tile)(float *out, size_t ldo, const float *const *xr,
                                        const uint8_t *w, size_t pbytes, int K, int load, int mr,
                                        int np, dalle_dtype dt) {
    switch (mr * 4 + np) {
        TILE_CASE(1, 1)
        TILE_CASE(2, 1)
        TILE_CASE(3, 1)
        TILE_CASE(4, 1)
#if TILE_MR >= 6
        TILE_CASE(5, 1)
        TILE_CASE(6, 1)
#endif
#if TILE_MR >= 8
        TILE_CASE(7, 1)
        TILE_CASE(8, 1)
#endif
#if TILE_MR_WIDE >= 2
        TILE_CASE(1, 2)
        TILE_CASE(2, 2)
#endif
#if TILE_MR_WIDE >= 8
        TILE_CASE(3, 2)
        TILE_CASE(4, 2)
        TILE_CASE(5, 2)
        TILE_CASE(6, 2)
        TILE_CASE(7, 2)
        TILE_CASE(8, 2)
#endif
    }
    DALLE_ASSERT(!"GEMM tile shape outside the variant");
}

static const dalle_cpu_gemm_variant TILE_NAME(variant) = {
    .name = TILE_LABEL, .tile = TILE_NAME(tile), .mr = TILE_MR, .mr_wide = TILE_MR_WIDE};

#undef TILE_CASE
#undef TILE_NVP
/* the includer's parameters, so that the next variant can define its own */
#undef TILE_TARGET
#undef TILE_NAME
#undef TILE_LABEL
#undef VEC
#undef VL
#undef V_ZERO
#undef V_SET1
#undef V_FMA
#undef V_ADD
#undef V_STORE
#undef V_LOAD_F32
#undef V_LOAD_F16
#undef V_LOAD_BF16
#undef TILE_MR
#undef TILE_MR_WIDE
