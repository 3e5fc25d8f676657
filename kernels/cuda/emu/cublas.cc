/* cublas.cc — the cuBLAS calls of kernels/cuda/linalg.cu on the emulated device:
 * C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C, column-major, queued on the handle's
 * stream (so recorded in a capture) like the library's kernels.
 *  - Arguments are checked as cuBLAS checks them (m, n, k ≥ 0, lda ≥ max(1, rows of A as
 *    stored), ldb, ldc likewise; types: A and B both 32F, 16F or 16BF, C 32F, compute 32F)
 *    → CUBLAS_STATUS_INVALID_VALUE / NOT_SUPPORTED; and as the real library cannot: every
 *    operand must lie inside one device allocation (else the process fails naming it).
 *  - Numerics: one fp32 GEMM (OpenBLAS's cblas_sgemm, the same BLAS argument convention)
 *    on the inputs, 16-bit ones widened exactly to fp32 first: fp32 products and fp32
 *    accumulation, as CUBLAS_COMPUTE_32F; beta = 0 never reads C (it may hold NaN). No TF32
 *    in any math mode. The summation order is the CPU library's, not cuBLAS's.
 */
#include <cblas.h>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "kernels/cuda/emu/internal.h"

struct dalle_emu_blas {
    cudaStream_t stream;
};

using namespace dalle_emu;

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new dalle_emu_blas{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !find_alloc(ws, bytes, nullptr, nullptr))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    return mode == CUBLAS_DEFAULT_MATH || mode == CUBLAS_PEDANTIC_MATH
               ? CUBLAS_STATUS_SUCCESS
               : CUBLAS_STATUS_INVALID_VALUE;
}

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

namespace {

/* a stored rows × cols operand (ld) as fp32: itself, or its 16-bit values widened into buf */
const float *widen(const void *p, cudaDataType_t t, int rows, int cols, int ld,
                   std::vector<float> &buf) {
    if (t == CUDA_R_32F)
        return (const float *)p;
    buf.assign((size_t)ld * cols, 0.0f);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++) {
            const size_t i = (size_t)c * ld + r;
            buf[i] = t == CUDA_R_16F ? __half2float(((const __half *)p)[i])
                                     : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
        }
    return buf.data();
}

size_t type_size(cudaDataType_t t) {
    return t == CUDA_R_32F ? 4 : 2;
}

/* a stored rows × cols column-major operand (ld) lies in one device allocation */
void check_operand(const char *call, const char *name, const void *p, int rows, int cols, int ld,
                   size_t es) {
    if (rows == 0 || cols == 0)
        return;
    const size_t bytes = ((size_t)(cols - 1) * ld + rows) * es;
    if (!find_alloc(p, bytes, nullptr, nullptr))
        api_fail("%s: operand %s (%d × %d, ld %d) at %p is not inside one device allocation", call,
                 name, rows, cols, ld, p);
}

cublasStatus_t gemm(const char *call, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, float alpha, const void *A, cudaDataType_t at, int lda,
                    const void *B, cudaDataType_t bt, int ldb, float beta, float *C, int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) ||
        ldc < (m > 1 ? m : 1) || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    check_operand(call, "A", A, ar, ac, lda, type_size(at));
    check_operand(call, "B", B, br, bc, ldb, type_size(bt));
    check_operand(call, "C", C, m, n, ldc, 4);
    char shape[96];
    snprintf(shape, sizeof shape, "%c%c:%dx%dx%d", ta == CUBLAS_OP_N ? 'N' : 'T',
             tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k);
    note_call(call, shape, false);
    enqueue(h->stream, [=] {
        /* 16-bit operands widened to fp32 in the same layout, then one fp32 GEMM with the
         * same arguments (the BLAS convention cuBLAS follows) */
        std::vector<float> a16, b16;
        const float *a = widen(A, at, ar, ac, lda, a16), *b = widen(B, bt, br, bc, ldb, b16);
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, a, lda, b, ldb,
                    beta, C, ldc);
    });
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
    return gemm("cublasSgemm", h, ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                *beta, C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    (void)algo;
    const bool in_ok = at == bt && (at == CUDA_R_32F || at == CUDA_R_16F || at == CUDA_R_16BF);
    if (!in_ok || ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm("cublasGemmEx", h, ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb,
                *(const float *)beta, (float *)C, ldc);
}
