/* emu.h — the emulated CUDA device (docs/gpu-emulator.md): what kernels/cuda/ sources see
 * when they are compiled as C++ by g++ instead of nvcc. The shim headers in include/
 * (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, cublas_v2.h, mma.h) come first on the include
 * path and all include this file.
 *
 * Contract:
 *  - Device-code keywords become plain C++ (__global__, __device__ → nothing); a static
 *    __shared__ variable becomes a function-static one: blocks run one at a time, so it is
 *    per block. Dynamic shared memory (DALLE_SHARED_DYN in internal.cuh) is a per-block
 *    arena, filled with 0xff (NaN) before each block.
 *  - Every thread of a block is a fiber; the fibers switch only at __syncthreads (a real
 *    barrier: every thread of the block must reach the same call site), at warp-collective
 *    operations (__shfl_*_sync, votes, wmma *_sync: the lanes of the mask must meet there)
 *    and at the end of the thread. A barrier or warp operation that cannot complete fails
 *    the process, naming the kernel, block, thread and source line.
 *  - DALLE_LAUNCH(kernel, grid, block, smem, stream)(args…) (internal.cuh) checks the
 *    launch configuration like the driver, then runs the grid on the stream (in order, at
 *    once) or records it into the stream's capture. Unless DALLE_EMU_SCHEDULES=forward, a
 *    launch runs twice, threads and blocks in forward then in reversed order, from the
 *    same memory, and the bytes it wrote must agree (else the process fails naming the
 *    kernel): a missing barrier or a race shows up as a difference.
 *  - threadIdx, blockIdx, blockDim, gridDim are globals set before each fiber resumes.
 */
#ifndef DALLE_KERNELS_CUDA_EMU_EMU_H
#define DALLE_KERNELS_CUDA_EMU_EMU_H

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits.h>
#include <math.h>
#include <memory>
#include <stdio.h>
#include <stdlib.h>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/* ---- device-code keywords ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__   static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
} cudaError_t;

typedef struct dalle_emu_stream *cudaStream_t;

namespace dalle_emu {

/* one warp-collective step of the calling lane: every lane named in mask must call the same
 * kind at the same line; returns this lane's result (the value bits, 8 bytes at most) */
enum warp_kind { W_SHFL_XOR, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_IDX, W_BALLOT, W_ANY, W_ALL, W_SYNC };
uint64_t warp_step(warp_kind kind, unsigned mask, uint64_t value, int arg, int width,
                   const char *file, int line);
void barrier(const char *file, int line);
/* the calling thread's lane, and its warp's 256-float scratch tile (wmma) */
int lane_id();
float *warp_tile();
void *dyn_smem();
/* the lane/thread being emulated, for a diagnostic */
[[noreturn]] void kernel_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* a launch: the grid, the closure of one thread, and the writable pointer arguments
 * (the memory a schedule comparison snapshots) */
struct launch_cfg {
    const char *name;
    const void *fn;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
void submit(const launch_cfg &cfg, std::function<void()> thread_body, std::vector<void *> writable);

template <class T> inline void collect_writable(std::vector<void *> &w, const T &v) {
    if constexpr (std::is_pointer_v<T>)
        if constexpr (!std::is_const_v<std::remove_pointer_t<T>>)
            if (v)
                w.push_back((void *)v);
}

template <class... P> struct launcher {
    launch_cfg cfg;
    void (*fn)(P...);
    template <class... A> void operator()(A &&...a) const {
        /* parameters converted as a real launch converts them, copied once */
        auto args = std::make_shared<std::tuple<P...>>(std::forward<A>(a)...);
        std::vector<void *> w;
        std::apply([&w](const P &...p) { (collect_writable(w, p), ...); }, *args);
        void (*f)(P...) = fn;
        submit(
            cfg, [f, args] { std::apply(f, *args); }, std::move(w));
    }
};

template <class... P>
launcher<P...> launch(const char *name, void (*fn)(P...), dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream) {
    return launcher<P...>{{name, (const void *)fn, grid, block, smem, stream}, fn};
}

template <class T> inline uint64_t bits_of(T v) {
    static_assert(sizeof(T) <= 8, "warp operations move at most 8 bytes");
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> inline T of_bits(uint64_t u) {
    T v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

} // namespace dalle_emu

/* ---- device functions ---- */
inline void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
    dalle_emu::barrier(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    dalle_emu::warp_step(dalle_emu::W_SYNC, mask, 0, 0, 32, file, line);
}

#define DALLE_EMU_SHFL(fname, kind)                                                                \
    template <class T>                                                                             \
    inline T fname(unsigned mask, T v, int arg, int width = 32,                                    \
                   const char *file = __builtin_FILE(), int line = __builtin_LINE()) {             \
        return dalle_emu::of_bits<T>(dalle_emu::warp_step(                                         \
            dalle_emu::kind, mask, dalle_emu::bits_of(v), arg, width, file, line));                \
    }
DALLE_EMU_SHFL(__shfl_xor_sync, W_SHFL_XOR)
DALLE_EMU_SHFL(__shfl_up_sync, W_SHFL_UP)
DALLE_EMU_SHFL(__shfl_down_sync, W_SHFL_DOWN)
DALLE_EMU_SHFL(__shfl_sync, W_SHFL_IDX)
#undef DALLE_EMU_SHFL

inline unsigned __ballot_sync(unsigned mask, int pred, const char *file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return (unsigned)dalle_emu::warp_step(dalle_emu::W_BALLOT, mask, pred != 0, 0, 32, file, line);
}
inline int __any_sync(unsigned mask, int pred, const char *file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)dalle_emu::warp_step(dalle_emu::W_ANY, mask, pred != 0, 0, 32, file, line);
}
inline int __all_sync(unsigned mask, int pred, const char *file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return (int)dalle_emu::warp_step(dalle_emu::W_ALL, mask, pred != 0, 0, 32, file, line);
}

/* fibers of one block never run at the same time: a read-modify-write is atomic */
template <class T> inline T atomicAdd(T *p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
template <class T> inline T atomicMax(T *p, T v) {
    const T old = *p;
    if (v > old)
        *p = v;
    return old;
}
template <class T> inline T atomicExch(T *p, T v) {
    const T old = *p;
    *p = v;
    return old;
}
template <class T> inline T atomicCAS(T *p, T cmp, T v) {
    const T old = *p;
    if (old == cmp)
        *p = v;
    return old;
}

/* IEEE-rounded arithmetic: plain C++ operations (the emulated build uses -ffp-contract=off) */
inline float __fadd_rn(float a, float b) {
    return a + b;
}
inline float __fsub_rn(float a, float b) {
    return a - b;
}
inline float __fmul_rn(float a, float b) {
    return a * b;
}
inline float __fdiv_rn(float a, float b) {
    return a / b;
}
inline double __dmul_rn(double a, double b) {
    return a * b;
}
inline float __double2float_rn(double a) {
    return (float)a;
}
inline unsigned __float_as_uint(float f) {
    return dalle_emu::of_bits<unsigned>(dalle_emu::bits_of(f));
}
inline float __uint_as_float(unsigned u) {
    return dalle_emu::of_bits<float>(u);
}
inline int min(int a, int b) {
    return a < b ? a : b;
}
inline int max(int a, int b) {
    return a > b ? a : b;
}

#endif /* DALLE_KERNELS_CUDA_EMU_EMU_H */
