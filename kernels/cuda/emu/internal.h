/* internal.h — between the emulator's own files (not seen by kernels/cuda/ sources):
 * runtime.cc owns device memory, streams, errors and launch checks; fiber.cc runs a grid
 * on fibers; launch.cc runs a launch (both schedules), the shared-memory arena, the
 * statistics and the fault reports; cublas.cc queues its GEMMs like kernels. */
#ifndef DALLE_KERNELS_CUDA_EMU_INTERNAL_H
#define DALLE_KERNELS_CUDA_EMU_INTERNAL_H

#include <string>

#include <stdarg.h>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1 /* AddressSanitizer build: heap blocks instead of guard pages */
#else
#define EMU_ASAN 0
#endif
#define EMU_PAGE 4096

namespace dalle_emu {

struct launch_rec {
    launch_cfg cfg;
    std::function<void()> body;
    std::vector<void *> writable;
};

/* the device allocation holding [p, p + bytes), or false */
bool find_alloc(const void *p, size_t bytes, char **base, size_t *size);

/* the alignment padding after the allocation at base still holds its 0xff fill (runtime.cc;
 * true under AddressSanitizer, which checks overruns itself) */
bool alloc_tail_intact(const char *base);

/* addr lies in the guard page after a device allocation (runtime.cc) */
bool alloc_guard(const void *addr);

/* fn now on the stream, or recorded when the stream is capturing; false (and the error
 * set) when that is not allowed */
void enqueue(cudaStream_t s, std::function<void()> fn);

/* runs one launch now, on the calling thread (launch.cc) */
void run_launch(const launch_rec &r);

/* runs every block of the current launch, blocks and threads forward or reversed
 * (fiber.cc); body is one thread */
void run_grid(const launch_cfg &cfg, const std::function<void()> &body, bool reverse);

/* a new block of the running grid starts: fresh dynamic shared memory (launch.cc) */
void new_block();

/* addr lies in a fiber stack's guard page (fiber.cc) */
bool in_stack_guard(const void *addr);

/* the emulated thread now running, for reports: "kernel K block (x,y,z) thread (x,y,z)" */
std::string where();
const char *current_kernel();

/* per-call statistics for the table (make gpu-emu): a library call counts like a kernel */
void note_call(const char *name, const std::string &shape, bool compared);

/* prints "emulated device: " where fmt… and aborts (launch.cc) */
[[noreturn]] void vfail(const std::string &where, const char *fmt, va_list ap);

/* bad arguments to a library or runtime call that the real one would not catch (it would
 * fault or read garbage): print and abort */
[[noreturn]] void api_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace dalle_emu

#endif /* DALLE_KERNELS_CUDA_EMU_INTERNAL_H */
