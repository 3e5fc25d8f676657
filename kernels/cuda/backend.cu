/* backend.cu — the CUDA backend's ops table and runtime: device selection, stream and cuBLAS
 * handle (with its own workspace), cudaMalloc'd memory, copies on the stream, the parameter
 * staging area, the device scratch (see internal.cuh) and recording (CUDA graphs). The ops
 * live in linalg.cu, norm.cu, attention.cu, decode.cu, elementwise.cu, conv.cu,
 * conv_igemm.cu, image.cu and sample.cu.
 *
 * Recording (ops.h graph_*): graph_begin starts a thread-local stream capture; the ops
 * called next are recorded, not run; graph_end instantiates the graph. A handle remembers
 * the scratch generation at capture and refuses to launch once any scratch buffer moved
 * (its recorded addresses would be freed memory). Ops that would allocate (a scratch that
 * must grow) or copy host arrays during a capture mark it failed instead, and graph_end
 * then returns NULL (the caller runs the step eagerly, which grows the buffer).
 * DALLE_CUDA_GRAPHS=0 turns recording off (graph_begin returns 0).
 */
#include <string.h>

#include "kernels/cuda/internal.cuh"
#include "kernels/fault.h"

void dalle_cuda_fail(const char *what, const char *detail, const char *op, const char *file,
                     int line) {
    dalle_fault("%s:%d: CUDA backend, op %s: %s failed: %s", file, line, op, what, detail);
}

static void *cu_alloc(dalle_backend *be, size_t bytes) {
    CUDA_CHECK(cudaSetDevice(dalle_cuda_of(be)->device), "alloc");
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        (void)cudaGetLastError(); /* out of memory is not sticky: clear it */
        return NULL;
    }
    return p;
}

static void cu_free(dalle_backend *be, void *p) {
    (void)be;
    if (p)
        CUDA_CHECK(cudaFree(p), "free");
}

static void cu_to_device(dalle_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, dalle_cuda_of(be)->stream),
               "to_device");
}

static void cu_to_host(dalle_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    dalle_cuda *cu = dalle_cuda_of(be);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream), "to_host");
    CUDA_CHECK(cudaStreamSynchronize(cu->stream), "to_host");
    be->to_host_copies++;
    be->syncs++;
}

static void cu_copy(dalle_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, dalle_cuda_of(be)->stream),
        "copy");
}

static void cu_sync(dalle_backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(dalle_cuda_of(be)->stream), "sync");
    be->syncs++;
}

static void cu_destroy(dalle_backend *be) {
    if (!be)
        return;
    dalle_cuda *cu = dalle_cuda_of(be);
    if (cu) {
        cudaSetDevice(cu->device);
        if (cu->stream)
            cudaStreamSynchronize(cu->stream);
        cudaFree(cu->stage);
        for (int i = 0; i < 3; i++)
            cudaFree(cu->scratch[i]);
        cudaFree(cu->blas_ws);
        free(cu->host_stage);
        if (cu->blas)
            cublasDestroy(cu->blas);
        if (cu->stream)
            cudaStreamDestroy(cu->stream);
        free(cu);
    }
    free(be);
}

/* Grow a device buffer to at least `bytes` (contents lost). cudaFree waits for the device,
 * so kernels still reading the old buffer finish first. During a capture nothing may be
 * allocated: the capture is marked failed and the old buffer returned (never run). */
static void *grow(dalle_cuda *cu, void **buf, size_t *have, size_t bytes, int recorded,
                  const char *op) {
    if (bytes > *have && cu->capturing) {
        cu->capture_failed = 1;
        return *buf;
    }
    if (bytes > *have) {
        if (recorded)
            cu->generation++; /* recorded steps may hold its address */
        size_t n = bytes < 4096 ? 4096 : bytes + bytes / 4;
        if (*buf)
            CUDA_CHECK(cudaFree(*buf), op);
        *buf = NULL;
        *have = 0;
        CUDA_CHECK(cudaMalloc(buf, n), op);
        *have = n;
    }
    return *buf;
}

void *dalle_cuda_scratch(dalle_backend *be, int which, size_t bytes, const char *op) {
    dalle_cuda *cu = dalle_cuda_of(be);
    DALLE_ASSERT(which >= 0 && which <= 2);
    /* scratch 0 (im2col, sampler) is never used by recordable ops */
    return grow(cu, &cu->scratch[which], &cu->scratch_bytes[which], bytes, which != 0, op);
}

void dalle_cuda_stage(dalle_backend *be, int n, const void *const *src, const size_t *bytes,
                      void **dev, const char *op) {
    dalle_cuda *cu = dalle_cuda_of(be);
    size_t off[8], total = 0;
    DALLE_ASSERT(n >= 0 && n <= 8);
    for (int i = 0; i < n; i++) {
        off[i] = total;
        total += (bytes[i] + 255) / 256 * 256;
    }
    if (total == 0) {
        for (int i = 0; i < n; i++)
            dev[i] = NULL;
        return;
    }
    if (cu->capturing) { /* a host-array op inside a recording: not recordable */
        cu->capture_failed = 1;
        for (int i = 0; i < n; i++)
            dev[i] = cu->stage;
        return;
    }
    if (total > cu->host_stage_bytes) {
        free(cu->host_stage);
        cu->host_stage = malloc(total);
        DALLE_ASSERT(cu->host_stage);
        cu->host_stage_bytes = total;
    }
    for (int i = 0; i < n; i++)
        if (src[i] && bytes[i])
            memcpy((char *)cu->host_stage + off[i], src[i], bytes[i]);
    char *d = (char *)grow(cu, &cu->stage, &cu->stage_bytes, total, 0, op);
    CUDA_CHECK(cudaMemcpyAsync(d, cu->host_stage, total, cudaMemcpyHostToDevice, cu->stream), op);
    for (int i = 0; i < n; i++)
        dev[i] = src[i] && bytes[i] ? d + off[i] : NULL;
}

int dalle_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

int dalle_cuda_weight_dtype_from_env(void) {
    const char *v = getenv("DALLE_CUDA_WEIGHTS");
    if (!v || !*v || strcmp(v, "f32") == 0)
        return DALLE_F32;
    if (strcmp(v, "f16") == 0)
        return DALLE_F16;
    if (strcmp(v, "bf16") == 0)
        return DALLE_BF16;
    return -1;
}

int dalle_cuda_kv_dtype_from_env(dalle_dtype weight_dtype) {
    const char *v = getenv("DALLE_CUDA_KV");
    if (!v || !*v)
        return weight_dtype;
    if (strcmp(v, "f32") == 0)
        return DALLE_F32;
    if (strcmp(v, "f16") == 0)
        return DALLE_F16;
    if (strcmp(v, "bf16") == 0)
        return DALLE_BF16;
    return -1;
}

/* ---- recording ------------------------------------------------------------------- */

typedef struct {
    cudaGraphExec_t exec;
    unsigned generation;
} cu_graph;

static int cu_graph_begin(dalle_backend *be) {
    dalle_cuda *cu = dalle_cuda_of(be);
    const char *env = getenv("DALLE_CUDA_GRAPHS");
    if ((env && strcmp(env, "0") == 0) || cu->capturing)
        return 0;
    CUDA_CHECK(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal), "graph_begin");
    cu->capturing = 1;
    cu->capture_failed = 0;
    return 1;
}

static void *cu_graph_end(dalle_backend *be) {
    dalle_cuda *cu = dalle_cuda_of(be);
    DALLE_ASSERT(cu->capturing);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(cu->stream, &graph);
    cu->capturing = 0;
    if (e != cudaSuccess || cu->capture_failed || !graph) {
        if (e != cudaSuccess) {
            fprintf(stderr,
                    "CUDA backend: recording the decode step failed (%s); running it eagerly\n",
                    cudaGetErrorString(e));
            (void)cudaGetLastError();
        }
        if (graph)
            cudaGraphDestroy(graph);
        return NULL;
    }
    cu_graph *g = (cu_graph *)calloc(1, sizeof *g);
    DALLE_ASSERT(g);
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        fprintf(stderr, "CUDA backend: cudaGraphInstantiate failed (%s); running eagerly\n",
                cudaGetErrorString(e));
        (void)cudaGetLastError();
        free(g);
        return NULL;
    }
    g->generation = cu->generation;
    return g;
}

static int cu_graph_launch(dalle_backend *be, void *graph) {
    dalle_cuda *cu = dalle_cuda_of(be);
    cu_graph *g = (cu_graph *)graph;
    if (g->generation != cu->generation)
        return 0;
    CUDA_CHECK(cudaGraphLaunch(g->exec, cu->stream), "graph_launch");
    return 1;
}

static void cu_graph_free(dalle_backend *be, void *graph) {
    (void)be;
    cu_graph *g = (cu_graph *)graph;
    if (!g)
        return;
    CUDA_CHECK(cudaGraphExecDestroy(g->exec), "graph_free");
    free(g);
}

static const dalle_backend_ops cuda_ops = {
    .name = "cuda",
    .weight_dtype = DALLE_F32,
    .keep_16bit = 0,    /* every weight in weight_dtype */
    .pack_bytes = NULL, /* row-major: cuBLAS reads W as it is */
    .pack = NULL,
    .alloc = cu_alloc,
    .free = cu_free,
    .to_device = cu_to_device,
    .to_host = cu_to_host,
    .copy = cu_copy,
    .sync = cu_sync,
    .destroy = cu_destroy,
    .variant = NULL,
    .matmul = dalle_cuda_matmul,
    .layernorm = dalle_cuda_layernorm,
    .embed = dalle_cuda_embed,
    .attention = dalle_cuda_attention,
    .gelu_mul = dalle_cuda_gelu_mul,
    .add = dalle_cuda_add,
    .sample = dalle_cuda_sample,
    .conv2d = dalle_cuda_conv2d,
    .group_norm = dalle_cuda_group_norm,
    .upsample2x = dalle_cuda_upsample2x,
    .bias_add = dalle_cuda_bias_add,
    .quick_gelu = dalle_cuda_quick_gelu,
    .patchify = dalle_cuda_patchify,
    .kv_dtype = DALLE_F32,
    .sample_dev = dalle_cuda_sample_dev,
    .embed_dev = dalle_cuda_embed_dev,
    .decode_attention = dalle_cuda_decode_attention,
    .cross_attention = dalle_cuda_cross_attention,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_launch = cu_graph_launch,
    .graph_free = cu_graph_free,
    .conv2d_up2x = dalle_cuda_conv2d_up2x,
    .conv2d_gn = dalle_cuda_conv2d_gn,
    .to_rgb8 = dalle_cuda_to_rgb8,
    .clip_prep = dalle_cuda_clip_prep,
};

dalle_backend *dalle_backend_cuda_new(int device, dalle_dtype weight_dtype, dalle_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        dalle_error_set(err, DALLE_ERR_BACKEND, "no CUDA device: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
        return NULL;
    }
    if (device < 0 || device >= n) {
        dalle_error_set(err, DALLE_ERR_BACKEND, "no CUDA device %d (this machine has %d)", device,
                        n);
        return NULL;
    }
    dalle_backend *be = (dalle_backend *)calloc(1, sizeof *be);
    dalle_cuda *cu = (dalle_cuda *)calloc(1, sizeof *cu);
    if (!be || !cu) {
        free(be);
        free(cu);
        dalle_error_set(err, DALLE_ERR_NOMEM, "cannot create the cuda backend");
        return NULL;
    }
    cu->ops = cuda_ops;
    cu->ops.weight_dtype = weight_dtype;
    const int kv = dalle_cuda_kv_dtype_from_env(weight_dtype);
    if (kv < 0) {
        free(be);
        free(cu);
        dalle_error_set(err, DALLE_ERR_BACKEND, "DALLE_CUDA_KV must be f32, f16 or bf16, got '%s'",
                        getenv("DALLE_CUDA_KV"));
        return NULL;
    }
    cu->ops.kv_dtype = (dalle_dtype)kv;
    cu->device = device;
    be->ops = &cu->ops;
    be->impl = cu;
    const char *step = NULL;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    if ((e = cudaSetDevice(device)) != cudaSuccess)
        step = "cudaSetDevice";
    else if ((e = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking)) != cudaSuccess)
        step = "cudaStreamCreate";
    else if ((bs = cublasCreate(&cu->blas)) != CUBLAS_STATUS_SUCCESS)
        step = "cublasCreate";
    else if ((bs = cublasSetStream(cu->blas, cu->stream)) != CUBLAS_STATUS_SUCCESS)
        step = "cublasSetStream";
    /* after cublasSetStream, which resets the workspace to cuBLAS's own pool: a workspace of
     * ours, so that GEMMs recorded in a graph never allocate (cuBLAS graph-capture notes) */
    else if ((e = cudaMalloc(&cu->blas_ws, DALLE_CUDA_BLAS_WS)) != cudaSuccess)
        step = "cudaMalloc (cuBLAS workspace)";
    else if ((bs = cublasSetWorkspace(cu->blas, cu->blas_ws, DALLE_CUDA_BLAS_WS)) !=
             CUBLAS_STATUS_SUCCESS)
        step = "cublasSetWorkspace";
    else if ((e = cudaDeviceGetAttribute(&cu->sms, cudaDevAttrMultiProcessorCount, device)) !=
             cudaSuccess)
        step = "cudaDeviceGetAttribute";
    /* fp32 GEMMs stay fp32 (pedantic: no TF32 even under NVIDIA_TF32_OVERRIDE), so they
     * compare with the CPU at ~1e-5; 16-bit weights use tensor cores with fp32 accumulation
     * (cublasGemmEx, CUBLAS_COMPUTE_32F). */
    else if ((bs = cublasSetMathMode(cu->blas, weight_dtype == DALLE_F32 ? CUBLAS_PEDANTIC_MATH
                                                                         : CUBLAS_DEFAULT_MATH)) !=
             CUBLAS_STATUS_SUCCESS)
        step = "cublasSetMathMode";
    if (step) {
        dalle_error_set(err, DALLE_ERR_BACKEND, "CUDA device %d: %s failed: %s", device, step,
                        e != cudaSuccess ? cudaGetErrorString(e) : cublasGetStatusString(bs));
        (void)cudaGetLastError();
        cu_destroy(be);
        return NULL;
    }
    return be;
}
