/* cuda.h — the CUDA backend (the .cu files in kernels/cuda/): the ops.h seam on one GPU. Built only
 * when nvcc is found (the Makefile then defines DALLE_WITH_CUDA).
 *
 * Contract:
 *  - One backend = one device, one stream, one cuBLAS handle; all ops are queued on that
 *    stream in call order, so ops.h's ordering holds. Use it from one thread at a time.
 *  - Activations fp32. Weights in `weight_dtype`: DALLE_F32 (cuBLAS SGEMM with TF32 off, so
 *    results match the CPU backend to ~1e-5) or DALLE_F16 / DALLE_BF16 (GEMMs with 16-bit
 *    inputs and fp32 accumulation; the activation operand is rounded to 16 bits in a small
 *    kernel). Norms, softmax, attention, CFG and sampling are fp32 in every mode.
 *  - The decode self-attention KV cache (ops.h kv_dtype) is in the weight dtype unless
 *    DALLE_CUDA_KV says otherwise; decode steps built from the device-index ops can be
 *    recorded as CUDA graphs (ops.h graph_*; DALLE_CUDA_GRAPHS=0 refuses to record).
 *  - alloc = cudaMalloc (never managed memory); NULL on failure. to_device / to_host copy on
 *    the stream; to_host waits for the copy (the caller reads host memory next).
 *  - Errors: a failing CUDA or cuBLAS call inside an op is a broken invariant or a sticky
 *    device fault: it names the statement, file:line and the op in dalle_fault
 *    (kernels/fault.h), which calls the process's fault handler (the server fails its
 *    requests with 503 and exits non-zero) or aborts. Only creation and allocation report
 *    failure to the caller.
 */
#ifndef DALLE_KERNELS_CUDA_CUDA_H
#define DALLE_KERNELS_CUDA_CUDA_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A CUDA backend on `device` (≥ 0) with weights in `weight_dtype`. NULL with err set when
 * there is no usable device (DALLE_ERR_BACKEND, "no CUDA device: …") or memory runs out. */
dalle_backend *dalle_backend_cuda_new(int device, dalle_dtype weight_dtype, dalle_error *err);

/* Number of usable CUDA devices; 0 when there is none or no driver (never fails). */
int dalle_cuda_device_count(void);

/* Weight dtype named by the environment variable DALLE_CUDA_WEIGHTS ("f32" — the default —,
 * "f16" or "bf16"); -1 for any other value. */
int dalle_cuda_weight_dtype_from_env(void);

/* KV cache dtype named by DALLE_CUDA_KV ("f32", "f16", "bf16"); unset or empty = the weight
 * dtype (so fp32 runs keep an fp32 cache and match the CPU); -1 for any other value. */
int dalle_cuda_kv_dtype_from_env(dalle_dtype weight_dtype);

/* Benchmarks: n uniform values in [−scale, scale) of dtype at device address p, made on the
 * device from seed (no host copy), queued on the backend's stream. */
void dalle_cuda_fill_random(dalle_backend *be, void *p, int64_t n, dalle_dtype dtype, float scale,
                            uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* DALLE_KERNELS_CUDA_CUDA_H */
