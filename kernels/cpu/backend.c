/* backend.c — the CPU backend's ops table: host memory (64-byte aligned), memcpy copies, a
 * no-op sync, the thread count and its pool (pool.c), the GEMM variant, the weight policy (16-bit
 * matrices kept, matmul and conv weights packed by linalg.c) and the per-backend scratch buffer.
 * The ops themselves live in files named like the CUDA backend's (kernels/cuda/): linalg.c,
 * norm.c, attention.c, decode.c, elementwise.c, conv.c, image.c and sample.c.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/cpu.h"

#define DALLE_CPU_ALIGN 64

static size_t round_up(size_t bytes) {
    if (bytes == 0)
        bytes = 1;
    return (bytes + DALLE_CPU_ALIGN - 1) / DALLE_CPU_ALIGN * DALLE_CPU_ALIGN;
}

static void *cpu_alloc(dalle_backend *be, size_t bytes) {
    (void)be;
    if (bytes > SIZE_MAX - DALLE_CPU_ALIGN)
        return NULL;
    return aligned_alloc(DALLE_CPU_ALIGN, round_up(bytes));
}

static void cpu_free(dalle_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_copy(dalle_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes)
        memcpy(dst, src, bytes);
}

/* Counted as the CUDA backend's copy-and-wait (ops.h dalle_backend). */
static void cpu_to_host(dalle_backend *be, void *dst, const void *src, size_t bytes) {
    if (!bytes)
        return;
    memcpy(dst, src, bytes);
    be->to_host_copies++;
    be->syncs++;
}

static void cpu_sync(dalle_backend *be) {
    be->syncs++;
}

static const char *cpu_variant(dalle_backend *be) {
    return dalle_cpu_of(be)->gemm->name;
}

static void cpu_destroy(dalle_backend *be) {
    if (!be)
        return;
    dalle_cpu *cpu = dalle_cpu_of(be);
    dalle_cpu_pool_free(cpu->pool);
    free(cpu->scratch);
    free(cpu->map);
    free(cpu);
    free(be);
}

/* *buf holding at least `bytes` (grown, contents dropped, when smaller); NULL and
 * be->failed = DALLE_ERR_NOMEM when memory runs out. */
static void *grow(dalle_backend *be, void **buf, size_t *have, size_t bytes) {
    if (bytes > *have) {
        free(*buf);
        *have = 0;
        *buf = bytes > SIZE_MAX - DALLE_CPU_ALIGN ? NULL
                                                  : aligned_alloc(DALLE_CPU_ALIGN, round_up(bytes));
        if (!*buf) {
            be->failed = DALLE_ERR_NOMEM;
            return NULL;
        }
        *have = round_up(bytes);
    }
    return *buf;
}

void *dalle_cpu_scratch(dalle_backend *be, size_t bytes) {
    dalle_cpu *cpu = dalle_cpu_of(be);
    return grow(be, &cpu->scratch, &cpu->scratch_bytes, bytes);
}

void *dalle_cpu_map(dalle_backend *be, size_t bytes) {
    dalle_cpu *cpu = dalle_cpu_of(be);
    return grow(be, &cpu->map, &cpu->map_bytes, bytes);
}

static const dalle_backend_ops cpu_ops = {
    .name = "cpu",
    .weight_dtype = DALLE_F32,
    .keep_16bit = 1,
    .pack_bytes = dalle_cpu_pack_weight_bytes,
    .pack = dalle_cpu_pack_weight,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_to_host,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
    .variant = cpu_variant,
    .matmul = dalle_cpu_matmul,
    .layernorm = dalle_cpu_layernorm,
    .embed = dalle_cpu_embed,
    .attention = dalle_cpu_attention,
    .gelu_mul = dalle_cpu_gelu_mul,
    .add = dalle_cpu_add,
    .sample = dalle_cpu_sample,
    .conv2d = dalle_cpu_conv2d,
    .group_norm = dalle_cpu_group_norm,
    .upsample2x = dalle_cpu_upsample2x,
    .bias_add = dalle_cpu_bias_add,
    .quick_gelu = dalle_cpu_quick_gelu,
    .patchify = dalle_cpu_patchify,
    .kv_dtype = DALLE_F32,
    .sample_dev = dalle_cpu_sample_dev,
    .embed_dev = dalle_cpu_embed, /* host memory is backend memory */
    .decode_attention = dalle_cpu_decode_attention,
    .cross_attention = dalle_cpu_cross_attention,
    /* no recording: graph_* stay NULL */
    .conv2d_up2x = dalle_cpu_conv2d_up2x,
    .conv2d_gn = dalle_cpu_conv2d_gn,
    .to_rgb8 = dalle_cpu_to_rgb8,
    .clip_prep = dalle_cpu_clip_prep,
};

dalle_backend *dalle_backend_cpu_new(int threads) {
    dalle_backend *be = calloc(1, sizeof *be);
    dalle_cpu *cpu = calloc(1, sizeof *cpu);
    if (!be || !cpu) {
        free(be);
        free(cpu);
        return NULL;
    }
    cpu->threads = threads > 0 ? threads : omp_get_num_procs();
    if (cpu->threads < 1)
        cpu->threads = 1;
    cpu->pool = dalle_cpu_pool_new(cpu->threads);
    if (!cpu->pool) {
        free(be);
        free(cpu);
        return NULL;
    }
    cpu->gemm = dalle_cpu_gemm_pick(getenv("DALLE_CPU_GEMM"));
    if (!cpu->gemm)
        cpu->gemm = dalle_cpu_gemm_pick(NULL); /* named variant not on this CPU */
    be->ops = &cpu_ops;
    be->impl = cpu;
    return be;
}
