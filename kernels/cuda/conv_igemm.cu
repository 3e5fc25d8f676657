/* conv_igemm.cu — VQGAN convolutions as implicit GEMM on tensor cores (16-bit weights), the
 * nearest ×2 upsample folded into the convolution's input indexing, and the pixels'
 * float → uint8 conversion on the device.
 *
 * conv (ops.h conv2d with F16/BF16 weights, and conv2d_up2x): GEMM with
 *   M = B·H·W output pixels, N = Cout, K = k·k·Cin,
 *   A[m, kk] = x[b, oy + ky − k/2, ox + kx − k/2, ci]   (zero outside; kk = (ky·k + kx)·Cin + ci)
 *   B[kk, n] = w[n, ky, kx, ci]                          (the [Cout, k, k, Cin] weight as [N, K])
 * built tile by tile in shared memory — im2col is never materialised (it would replicate
 * every activation k² times). With `up`, x is [B, H/2, W/2, Cin] and the conv reads the ×2
 * nearest-upsampled map it stands for: x[b, iy/2, ix/2, ci] (bounds checked at full size).
 * Block tile 64 (M) × 64 (N), K step 32; 4 warps, each a 32 × 32 sub-tile of 2 × 2 wmma
 * m16n16k16 fragments with fp16 or bf16 inputs (the weight dtype; activations rounded to it
 * while staging) and fp32 accumulators. Epilogue: accumulators → shared (fp32) → + bias →
 * y fp32, bounds checked. Shapes of any size (M, N, K tails zero-filled).
 * conv2d_gn (ops.h): GroupNorm (+ swish) folded into the same staging — a statistics
 * kernel per (image, group) first (norm.cu's arithmetic: double sums, the mean as hi + lo
 * floats), then each staged in-bounds value is normalised exactly as group_norm_kernel
 * would have written it, so the normalised map never goes through memory.
 */
#include <limits.h>
#include <mma.h>

#include "kernels/cuda/internal.cuh"

using namespace nvcuda;

#define IG_BM      64
#define IG_BN      64
#define IG_BK      32
#define IG_LDS     (IG_BK + 8) /* 16-bit elements per staged row: 80 bytes, a multiple of 16 */
#define IG_THREADS 128

template <typename T> __device__ __forceinline__ T ig_cvt(float v);
template <> __device__ __forceinline__ __half ig_cvt<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 ig_cvt<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

/* GroupNorm statistics of x [B, HW, C] per (b, group) (internal.cuh dalle_gn_stats, as
 * norm.cu's group_norm): st[3·(b·groups + g) + {0,1,2}] = (hi, lo, rstd). */
__global__ void gn_stats_kernel(float *st, const float *x, int HW, int C, int groups, float eps) {
    __shared__ double shm[32];
    const int b = blockIdx.x / groups, g = blockIdx.x % groups, cg = C / groups;
    const float *xb = x + (size_t)b * HW * C + (size_t)g * cg; // [HW, C] from channel g·cg
    const dalle_gn_stat s = dalle_gn_stats(xb, (int64_t)HW * cg, cg, C, eps, shm);
    if (threadIdx.x == 0) {
        st[3 * blockIdx.x] = s.hi;
        st[3 * blockIdx.x + 1] = s.lo;
        st[3 * blockIdx.x + 2] = s.rstd;
    }
}

/* the GroupNorm (+ swish) of one input value of channel c of image b: the values norm.cu's
 * group_norm writes */
__device__ __forceinline__ float gn_apply(float v, const float *st, const void *g, const void *be,
                                          int dt, int b, int c, int cg, int groups, int swish) {
    const float *s = st + 3 * ((size_t)b * groups + c / cg);
    return dalle_gn_apply(v, {s[0], s[1], s[2]}, dalle_ldw(g, dt, (size_t)c),
                          dalle_ldw(be, dt, (size_t)c), swish);
}

template <typename T>
__global__ void __launch_bounds__(IG_THREADS)
    conv_igemm_kernel(float *y, const float *x, const T *w, const void *bias, int bias_dt, int B,
                      int H, int W, int Cin, int Cout, int k, int up, const float *gn_st,
                      const void *gn_g, const void *gn_b, int groups, int swish) {
    __shared__ __align__(32) T As[IG_BM * IG_LDS]; /* [m][kk] */
    __shared__ __align__(32) T Bs[IG_BN * IG_LDS]; /* [n][kk] */
    __shared__ __align__(32) float Cs[IG_BM * IG_BN];
    __shared__ int rb[IG_BM], ry[IG_BM], rx[IG_BM]; /* each tile row's (b, oy, ox); b −1 = past M */
    const int64_t M = (int64_t)B * H * W;
    const int K = k * k * Cin, pad = k / 2;
    const int Hx = up ? H / 2 : H, Wx = up ? W / 2 : W; /* x's own size */
    const int64_t m0 = (int64_t)blockIdx.x * IG_BM;
    const int n0 = blockIdx.y * IG_BN;
    const int warp = threadIdx.x >> 5, wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    for (int r = threadIdx.x; r < IG_BM; r += blockDim.x) {
        const int64_t m = m0 + r;
        if (m < M) {
            rx[r] = (int)(m % W);
            ry[r] = (int)((m / W) % H);
            rb[r] = (int)(m / ((int64_t)W * H));
        } else {
            rb[r] = -1, ry[r] = rx[r] = 0;
        }
    }
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);
    __syncthreads();
    for (int k0 = 0; k0 < K; k0 += IG_BK) {
        for (int e = threadIdx.x; e < IG_BM * IG_BK; e += blockDim.x) { /* A: the input gather */
            const int r = e / IG_BK, c = e % IG_BK, kk = k0 + c;
            float v = 0.0f;
            if (rb[r] >= 0 && kk < K) {
                const int ci = kk % Cin, t = kk / Cin, kx = t % k, ky = t / k;
                int iy = ry[r] + ky - pad, ix = rx[r] + kx - pad;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
                    if (up)
                        iy >>= 1, ix >>= 1;
                    v = x[(((size_t)rb[r] * Hx + iy) * Wx + ix) * Cin + ci];
                    if (gn_st) /* GroupNorm (+ swish) in the prologue; padding stays 0 */
                        v = gn_apply(v, gn_st, gn_g, gn_b, bias_dt, rb[r], ci, Cin / groups, groups,
                                     swish);
                }
            }
            As[r * IG_LDS + c] = ig_cvt<T>(v);
        }
        for (int e = threadIdx.x; e < IG_BN * IG_BK; e += blockDim.x) { /* B: weight rows */
            const int n = e / IG_BK, c = e % IG_BK;
            Bs[n * IG_LDS + c] =
                (n0 + n < Cout && k0 + c < K) ? w[(size_t)(n0 + n) * K + k0 + c] : ig_cvt<T>(0.0f);
        }
        __syncthreads();
        for (int kk = 0; kk < IG_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
            for (int i = 0; i < 2; i++)
                wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * IG_LDS + kk, IG_LDS);
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(b[j], Bs + (wn + 16 * j) * IG_LDS + kk, IG_LDS);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wm + 16 * i) * IG_BN + wn + 16 * j, acc[i][j], IG_BN,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int e = threadIdx.x; e < IG_BM * IG_BN; e += blockDim.x) {
        const int r = e / IG_BN, c = e % IG_BN;
        const int64_t m = m0 + r;
        const int n = n0 + c;
        if (m < M && n < Cout)
            y[(size_t)m * Cout + n] = Cs[e] + (bias ? dalle_ldw(bias, bias_dt, (size_t)n) : 0.0f);
    }
}

/* y[B,H,W,Cout] = conv(x) + bias on tensor cores; x is [B,H,W,Cin], or [B,H/2,W/2,Cin]
 * read through the ×2 nearest upsample when up; with gn_gamma, x goes through GroupNorm
 * (groups, eps; + swish) while staged, its statistics computed first into scratch 0.
 * Weights F16 or BF16. */
extern "C" void dalle_cuda_conv_igemm(dalle_backend *be, float *y, const float *x,
                                      const dalle_tensor *w, const dalle_tensor *bias, int B, int H,
                                      int W, int Cin, int Cout, int k, int up,
                                      const dalle_tensor *gn_gamma, const dalle_tensor *gn_beta,
                                      int groups, float eps, int swish, const char *op) {
    dalle_cuda *cu = dalle_cuda_of(be);
    DALLE_ASSERT(w->dtype == DALLE_F16 || w->dtype == DALLE_BF16);
    DALLE_ASSERT(!up || (H % 2 == 0 && W % 2 == 0));
    const int64_t M = (int64_t)B * H * W;
    DALLE_ASSERT((int64_t)k * k * Cin <= INT_MAX);
    if (M == 0)
        return;
    const int64_t mb = (M + IG_BM - 1) / IG_BM;
    DALLE_ASSERT(mb <= INT_MAX);
    const dim3 grid((unsigned)mb, (unsigned)((Cout + IG_BN - 1) / IG_BN));
    const void *bd = bias ? bias->data : NULL;
    float *st = NULL;
    if (gn_gamma) {
        DALLE_ASSERT(gn_beta && !up && groups >= 1 && Cin % groups == 0);
        st = (float *)dalle_cuda_scratch(be, 0, (size_t)B * groups * 3 * sizeof(float), op);
        DALLE_LAUNCH(gn_stats_kernel, B * groups, 1024, 0, cu->stream)
        (st, x, H * W, Cin, groups, eps);
        CUDA_LAUNCHED(op);
    }
    const void *gg = gn_gamma ? gn_gamma->data : NULL, *gb = gn_beta ? gn_beta->data : NULL;
    if (w->dtype == DALLE_F16) {
        DALLE_LAUNCH(conv_igemm_kernel<__half>, grid, IG_THREADS, 0, cu->stream)
        (y, x, (const __half *)w->data, bd, cu->ops.weight_dtype, B, H, W, Cin, Cout, k, up, st, gg,
         gb, groups, swish);
    } else {
        DALLE_LAUNCH(conv_igemm_kernel<__nv_bfloat16>, grid, IG_THREADS, 0, cu->stream)
        (y, x, (const __nv_bfloat16 *)w->data, bd, cu->ops.weight_dtype, B, H, W, Cin, Cout, k, up,
         st, gg, gb, groups, swish);
    }
    CUDA_LAUNCHED(op);
}
