/* mma.h (emulated device) — nvcuda::wmma for m16n16k16 tiles: fragments, fill, load,
 * store and mma_sync. The fragment layout is opaque in CUDA, so every lane holds the whole
 * tile; each operation is a warp-collective step (all 32 lanes must meet there) and checks
 * the documented pointer (32-byte) and leading-dimension (16-byte multiple) rules.
 * mma_sync multiplies once per warp (lane 0, into the warp's scratch tile): the 16-bit
 * inputs exactly in fp32, accumulated in fp32, k in order (real tensor cores may round the
 * sum differently: docs/gpu-emulator.md). */
#ifndef DALLE_EMU_MMA_H
#define DALLE_EMU_MMA_H

#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float to_float(float v) {
    return v;
}
inline float to_float(__half v) {
    return __half2float(v);
}
inline float to_float(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

/* the tile, row-major: matrix_a M×K, matrix_b K×N, accumulator M×N */
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[rows * cols];
};

void check_tile(const void *p, unsigned ldm, size_t elem, const char *what, const char *file,
                int line);

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, T v) {
    for (int i = 0; i < f.num_elements; i++)
        f.x[i] = v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm,
                             const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    dalle_emu::warp_step(dalle_emu::W_SYNC, 0xffffffffu, 0, 0, 32, file, line);
    check_tile(p, ldm, sizeof(T), "load_matrix_sync", file, line);
    constexpr bool col = std::is_same_v<L, col_major>;
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            f.x[r * f.cols + c] = col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f,
                              unsigned ldm, layout_t layout, const char *file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    dalle_emu::warp_step(dalle_emu::W_SYNC, 0xffffffffu, 0, 0, 32, file, line);
    check_tile(p, ldm, sizeof(float), "store_matrix_sync", file, line);
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            (layout == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) =
                f.x[r * N + c];
}

/* lane 0 multiplies once for the warp into the warp's scratch tile, between two warp
 * steps; every lane then copies the result */
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d,
                     const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b,
                     const fragment<accumulator, M, N, K, float> &c,
                     const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(M * N <= 256, "the warp's scratch tile holds 16 × 16 floats");
    dalle_emu::warp_step(dalle_emu::W_SYNC, 0xffffffffu, 0, 0, 32, file, line);
    float *out = dalle_emu::warp_tile();
    if (dalle_emu::lane_id() == 0)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = c.x[i * N + j];
                for (int k = 0; k < K; k++)
                    s += to_float(a.x[i * K + k]) * to_float(b.x[k * N + j]);
                out[i * N + j] = s;
            }
    dalle_emu::warp_step(dalle_emu::W_SYNC, 0xffffffffu, 0, 0, 32, file, line);
    std::memcpy(d.x, out, sizeof d.x);
}

} // namespace wmma
} // namespace nvcuda

#endif /* DALLE_EMU_MMA_H */
