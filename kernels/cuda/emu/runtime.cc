/* runtime.cc — the CUDA runtime API of the emulated device (include/cuda_runtime.h): one
 * device (an H100's limits: 132 SMs, 1024 threads and 48 KiB of dynamic shared memory per
 * block unless a kernel's attribute raises it to at most 227 KiB), memory, streams, graphs
 * and errors.
 *
 *  - Device memory is host memory: each allocation ends at a guard page (an overrun faults
 *    and is reported with the kernel and thread; the < 16 bytes of alignment padding before
 *    it hold 0xff and are checked after each launch), or under AddressSanitizer is a heap
 *    block (ASan reports the overrun). Copies check that the device side lies inside one
 *    allocation.
 *  - Streams run their work at once, in call order. A capturing stream records kernel
 *    launches, library calls and device-to-device copies instead; a host copy, a
 *    synchronisation, cudaMalloc or cudaFree during a capture is refused and invalidates it
 *    (cudaStreamEndCapture then fails), as CUDA does in thread-local capture mode. A graph
 *    replays its records in order: launches with the argument values recorded, device-side
 *    arrays read as they are at replay.
 *  - Errors: a bad launch configuration is a non-sticky error for cudaGetLastError. A
 *    sticky fault (cudaErrorIllegalAddress) is injected with DALLE_EMU_FAULT_AT=N (the N-th
 *    kernel launch faults instead of running): from then on every call returns it.
 */
#include <sys/mman.h>

#include <map>
#include <mutex>

#include "kernels/cuda/emu/internal.h"

#define EMU_SMS            132
#define EMU_MAX_THREADS    1024
#define EMU_SMEM_DEFAULT   (48 * 1024)
#define EMU_SMEM_OPTIN_MAX (227 * 1024)

struct dalle_emu_stream {
    bool capturing, invalidated;
    std::vector<std::function<void()>> rec;
};
struct dalle_emu_graph {
    std::vector<std::function<void()>> ops;
};

namespace dalle_emu {
namespace {

struct alloc {
    size_t bytes;
    char *map; /* the mapping (guarded build) */
    size_t map_bytes;
};

std::recursive_mutex mu;
std::map<uintptr_t, alloc> allocs; /* by base address */
cudaError_t last_error = cudaSuccess, sticky = cudaSuccess;
dalle_emu_stream default_stream;
std::map<const void *, int> max_dyn_smem; /* cudaFuncAttributeMaxDynamicSharedMemorySize */
long launches;

cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess)
        last_error = e;
    return e;
}

dalle_emu_stream *stream_of(cudaStream_t s) {
    return s ? s : &default_stream;
}

/* a call that CUDA refuses while `s` (or any stream, for a device-wide call) captures */
cudaError_t refuse_in_capture(dalle_emu_stream *s) {
    s->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
}

std::vector<dalle_emu_stream *> streams; /* live streams, for device-wide calls */

dalle_emu_stream *capturing_stream() {
    if (default_stream.capturing)
        return &default_stream;
    for (auto *s : streams)
        if (s->capturing)
            return s;
    return nullptr;
}

} // namespace

bool find_alloc(const void *p, size_t bytes, char **base, size_t *size) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin())
        return false;
    --it;
    if (a < it->first || a + bytes > it->first + it->second.bytes || bytes > it->second.bytes)
        return false;
    if (base)
        *base = (char *)it->first;
    if (size)
        *size = it->second.bytes;
    return true;
}

bool alloc_tail_intact(const char *base) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    auto it = allocs.find((uintptr_t)base);
    if (it == allocs.end() || !it->second.map)
        return true;
    const char *end = it->second.map + it->second.map_bytes - EMU_PAGE;
    for (const char *p = base + it->second.bytes; p < end; p++)
        if ((unsigned char)*p != 0xff)
            return false;
    return true;
}

bool alloc_guard(const void *addr) {
    const char *a = (const char *)addr;
    for (const auto &[base, al] : allocs)
        if (al.map && a >= al.map + al.map_bytes - EMU_PAGE && a < al.map + al.map_bytes)
            return true;
    return false;
}

void enqueue(cudaStream_t st, std::function<void()> fn) {
    dalle_emu_stream *s = stream_of(st);
    if (s->capturing)
        s->rec.push_back(std::move(fn));
    else
        fn();
}

void submit(const launch_cfg &cfg, std::function<void()> body, std::vector<void *> writable) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    if (sticky)
        return;
    const dim3 b = cfg.block, g = cfg.grid;
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    if (threads < 1 || threads > EMU_MAX_THREADS || b.z > 64 || g.x < 1 || g.y < 1 || g.z < 1 ||
        g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (cfg.smem > EMU_SMEM_DEFAULT) {
        auto it = max_dyn_smem.find(cfg.fn);
        if (it == max_dyn_smem.end() || cfg.smem > (size_t)it->second) {
            fail(cudaErrorInvalidValue);
            return;
        }
    }
    const char *at = getenv("DALLE_EMU_FAULT_AT");
    if (at && *at && ++launches == atol(at)) {
        sticky = cudaErrorIllegalAddress;
        fail(sticky);
        return;
    }
    auto rec = std::make_shared<launch_rec>(launch_rec{cfg, std::move(body), std::move(writable)});
    enqueue(cfg.stream, [rec] { run_launch(*rec); });
}

} // namespace dalle_emu

using namespace dalle_emu;

#define STICKY()                                                                                   \
    std::lock_guard<std::recursive_mutex> lock_(mu);                                               \
    if (sticky)                                                                                    \
    return fail(sticky)

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
        return "operation would make the legacy stream depend on a capturing blocking stream";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    const cudaError_t e = last_error;
    if (!sticky)
        last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    std::lock_guard<std::recursive_mutex> lock(mu);
    return last_error;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    STICKY();
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    STICKY();
    if (device != 0)
        return fail(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = EMU_MAX_THREADS; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = EMU_SMEM_DEFAULT; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = EMU_SMS; return cudaSuccess;
    }
    return fail(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize(void) {
    STICKY();
    if (dalle_emu_stream *s = capturing_stream())
        return refuse_in_capture(s);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    STICKY();
    *p = nullptr;
    if (dalle_emu_stream *s = capturing_stream())
        return refuse_in_capture(s);
    alloc a = {bytes ? bytes : 1, nullptr, 0};
#if EMU_ASAN
    char *base = (char *)malloc(a.bytes);
    if (!base)
        return fail(cudaErrorMemoryAllocation);
#else
    const size_t span = (a.bytes + 15) / 16 * 16;
    a.map_bytes = (span + EMU_PAGE - 1) / EMU_PAGE * EMU_PAGE + EMU_PAGE;
    a.map = (char *)mmap(nullptr, a.map_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a.map == MAP_FAILED)
        return fail(cudaErrorMemoryAllocation);
    mprotect(a.map + a.map_bytes - EMU_PAGE, EMU_PAGE, PROT_NONE);
    char *base = a.map + a.map_bytes - EMU_PAGE - span;
    memset(base + a.bytes, 0xff, span - a.bytes); /* the padding checked after launches */
#endif
    memset(base, 0xff, a.bytes); /* fresh device memory is garbage, not zeros */
    allocs[(uintptr_t)base] = a;
    *p = base;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    STICKY();
    if (!p)
        return cudaSuccess;
    if (dalle_emu_stream *s = capturing_stream())
        return refuse_in_capture(s);
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end())
        return fail(cudaErrorInvalidValue);
#if EMU_ASAN
    free(p);
#else
    munmap(it->second.map, it->second.map_bytes);
#endif
    allocs.erase(it);
    return cudaSuccess;
}

/* the device side(s) of a copy lie inside allocations */
static bool copy_ok(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    const bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dd && !find_alloc(dst, bytes, nullptr, nullptr))
        return false;
    if (sd && !find_alloc(src, bytes, nullptr, nullptr))
        return false;
    return kind != cudaMemcpyHostToHost && kind <= cudaMemcpyDefault;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    STICKY();
    if (dalle_emu_stream *s = capturing_stream()) {
        s->invalidated = true;
        return fail(cudaErrorStreamCaptureImplicit);
    }
    if (!copy_ok(dst, src, bytes, kind))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t st) {
    STICKY();
    if (!copy_ok(dst, src, bytes, kind))
        return fail(cudaErrorInvalidValue);
    dalle_emu_stream *s = stream_of(st);
    if (s->capturing && kind != cudaMemcpyDeviceToDevice)
        return refuse_in_capture(s);
    enqueue(st, [dst, src, bytes] { memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t st) {
    STICKY();
    if (!find_alloc(dst, bytes, nullptr, nullptr))
        return fail(cudaErrorInvalidValue);
    enqueue(st, [dst, value, bytes] { memset(dst, value, bytes); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    STICKY();
    (void)flags;
    *s = new dalle_emu_stream();
    streams.push_back(*s);
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) {
    return cudaStreamCreateWithFlags(s, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    STICKY();
    for (size_t i = 0; i < streams.size(); i++)
        if (streams[i] == s) {
            streams.erase(streams.begin() + (long)i);
            delete s;
            return cudaSuccess;
        }
    return fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamSynchronize(cudaStream_t st) {
    STICKY();
    dalle_emu_stream *s = stream_of(st);
    if (s->capturing)
        return refuse_in_capture(s);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t st, cudaStreamCaptureMode mode) {
    STICKY();
    (void)mode;
    dalle_emu_stream *s = stream_of(st);
    if (s->capturing)
        return fail(cudaErrorInvalidValue);
    s->capturing = true;
    s->invalidated = false;
    s->rec.clear();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t st, cudaGraph_t *graph) {
    STICKY();
    dalle_emu_stream *s = stream_of(st);
    *graph = nullptr;
    if (!s->capturing)
        return fail(cudaErrorInvalidValue);
    s->capturing = false;
    if (s->invalidated) {
        s->rec.clear();
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *graph = new dalle_emu_graph{std::move(s->rec)};
    s->rec.clear();
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
    STICKY();
    (void)flags;
    if (!graph)
        return fail(cudaErrorInvalidValue);
    *exec = new dalle_emu_graph{graph->ops};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t st) {
    STICKY();
    if (!exec)
        return fail(cudaErrorInvalidValue);
    for (const auto &op : exec->ops) {
        enqueue(st, op);
        if (sticky)
            return fail(sticky);
    }
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    STICKY();
    delete exec;
    return cudaSuccess;
}

cudaError_t dalle_emu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value) {
    STICKY();
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        value > EMU_SMEM_OPTIN_MAX)
        return fail(cudaErrorInvalidValue);
    max_dyn_smem[fn] = value;
    return cudaSuccess;
}
