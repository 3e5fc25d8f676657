/* linalg.cu — matmul through cuBLAS: y[M,N] = x[M,K] · W[:N,:K]ᵀ (+ y).
 *
 * Row-major y[M,N] is column-major yᵀ (N×M, ld N); row-major W[N_w,K] is column-major
 * Wᵀ (K×N_w, ld K); so yᵀ = op_T(Wᵀ)·xᵀ is one column-major GEMM with m = N, n = M, k = K,
 * reading only the first N rows of W (lm_head restricted to the image codes).
 *  - F32 weights: cublasSgemm, pedantic math (no TF32) — compares with the CPU GEMM core at ~1e-5.
 *  - F16 / BF16 weights: x is rounded to the weight dtype in scratch 1, then cublasGemmEx
 *    with fp32 output and CUBLAS_COMPUTE_32F (tensor cores, fp32 accumulation).
 * cuBLAS picks its kernel by shape, so a row's result may change with M: this backend is
 * deterministic per batch shape, not batch-invariant (dalle.h, reproducibility contract).
 */
#include "kernels/cuda/internal.cuh"

template <typename T> __global__ void round_to(T *dst, const float *src, int64_t n);
template <> __global__ void round_to<__half>(__half *dst, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}
template <>
__global__ void round_to<__nv_bfloat16>(__nv_bfloat16 *dst, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void dalle_cuda_gemm_xwt(dalle_backend *be, float *y, const float *x, const dalle_tensor *w, int M,
                         int N, int K, float beta, const char *op) {
    dalle_cuda *cu = dalle_cuda_of(be);
    DALLE_ASSERT(w && w->data && w->dtype == cu->ops.weight_dtype);
    if (M == 0)
        return;
    const float alpha = 1.0f;
    if (w->dtype == DALLE_F32) {
        CUBLAS_CHECK(cublasSgemm(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha,
                                 (const float *)w->data, K, x, K, &beta, y, N),
                     op);
        return;
    }
    const int64_t n = (int64_t)M * K;
    void *xh = dalle_cuda_scratch(be, 1, (size_t)n * 2, op);
    cudaDataType_t t;
    if (w->dtype == DALLE_F16) {
        DALLE_LAUNCH(round_to<__half>, dalle_cuda_blocks(n, 256), 256, 0, cu->stream)
        ((__half *)xh, x, n);
        t = CUDA_R_16F;
    } else {
        DALLE_LAUNCH(round_to<__nv_bfloat16>, dalle_cuda_blocks(n, 256), 256, 0, cu->stream)
        ((__nv_bfloat16 *)xh, x, n);
        t = CUDA_R_16BF;
    }
    CUDA_LAUNCHED(op);
    CUBLAS_CHECK(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w->data, t, K,
                              xh, t, K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 op);
}

extern "C" void dalle_cuda_matmul(dalle_backend *be, float *y, const float *x,
                                  const dalle_tensor *w, int M, int N, int K, int accumulate) {
    DALLE_ASSERT(w->ndim == 2 && N >= 1 && N <= w->shape[0] && K >= 1 && K == w->shape[1]);
    DALLE_ASSERT(M >= 0);
    dalle_cuda_gemm_xwt(be, y, x, w, M, N, K, accumulate ? 1.0f : 0.0f, "matmul");
}
