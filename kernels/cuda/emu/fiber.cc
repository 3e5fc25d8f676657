/* fiber.cc — the emulated device's threads: every thread of a block is a fiber on its own
 * small stack (x86-64 context switch below); the block's scheduler resumes them warp by
 * warp (run_block) until each one finishes or waits at __syncthreads; a fiber also yields
 * at every warp collective. A barrier opens when every thread of the block waits at the same call
 * site; a warp collective completes when every lane of its mask has arrived with the same
 * operation. Anything else (a thread that exited while others wait, divergent call sites,
 * lanes that never arrive) is reported with the kernel, block, thread and line, and the
 * process aborts. Fiber stacks have a guard page below them (an overflow faults there).
 * Under AddressSanitizer the switches are announced (__sanitizer_*_switch_fiber) and a
 * reused stack is unpoisoned first.
 */
#include <pthread.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "kernels/cuda/emu/internal.h"
#include "mma.h"

#if EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_STACK_BYTES ((size_t)512 << 10)
#else
#define EMU_STACK_BYTES ((size_t)128 << 10)
#endif
#define EMU_MAX_THREADS 1024

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

/* dalle_emu_swap(save, to): saves the callee-saved registers on the current stack, stores
 * its pointer in *save, continues on the stack `to`. The FP control words are not switched:
 * kernels never change the rounding mode, so every fiber shares the caller's. */
asm(R"(
    .text
    .globl dalle_emu_swap
    .type dalle_emu_swap, @function
dalle_emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dalle_emu_swap, .-dalle_emu_swap
)");
extern "C" void dalle_emu_swap(void **save, void *to);

namespace dalle_emu {
namespace {

enum fstate { F_RUN, F_BARRIER, F_WARP, F_DONE };

struct fiber {
    void *sp;
    uint3 idx;   /* its threadIdx */
    char *stack; /* EMU_STACK_BYTES above a guard page */
    fstate state;
    const char *file;
    int line;
    warp_kind kind;
    unsigned mask;
    uint64_t value, result;
    int arg, width;
    void *fake_stack; /* AddressSanitizer's, while switched away */
};

fiber fibers[EMU_MAX_THREADS];
int arrived[EMU_MAX_THREADS / 32];      /* lanes of each warp waiting at a warp operation */
float tiles[EMU_MAX_THREADS / 32][256]; /* each warp's scratch tile */
int nthreads, nrun, ndone;              /* threads, of which runnable, finished */
bool reversed;                          /* this block's schedule */
fiber *cur;
void *main_sp;
const std::function<void()> *body;
const launch_cfg *cfg_now;
const void *main_bottom; /* the scheduler's stack (for AddressSanitizer) */
size_t main_size;

void asan_start(void **fake, const void *bottom, size_t size) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}
void asan_finish(void *fake, const void **bottom, size_t *size) {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

/* The current fiber stops running (it waits, or is done: `last`, its stack is finished
 * with): the next runnable lane of its warp in schedule order continues directly, as the
 * scheduler's pass would have resumed it next; with none, the scheduler does. */
void switch_away(bool last) {
    fiber *f = cur;
    const int t = (int)(f - fibers), base = t & ~31;
    const int end = base + 32 < nthreads ? base + 32 : nthreads;
    fiber *next = nullptr;
    for (int u = reversed ? t - 1 : t + 1; !next && u >= base && u < end; u += reversed ? -1 : 1)
        if (fibers[u].state == F_RUN)
            next = &fibers[u];
    void *to = main_sp;
    const void *bottom = main_bottom;
    size_t size = main_size;
    if (next) {
        to = next->sp, bottom = next->stack, size = EMU_STACK_BYTES;
        cur = next;
        threadIdx = next->idx;
    }
    asan_start(last ? nullptr : &f->fake_stack, bottom, size);
    dalle_emu_swap(&f->sp, to);
    asan_finish(f->fake_stack, nullptr, nullptr);
}

/* the current fiber, still runnable, hands back to the scheduler (after it completed a warp
 * operation: the scheduler resumes the warp's lanes in order) */
void to_scheduler() {
    fiber *f = cur;
    asan_start(&f->fake_stack, main_bottom, main_size);
    dalle_emu_swap(&f->sp, main_sp);
    asan_finish(f->fake_stack, nullptr, nullptr);
}

void fiber_main() {
    asan_finish(nullptr, nullptr, nullptr);
    (*body)();
    cur->state = F_DONE;
    nrun--;
    ndone++;
    switch_away(true);
}

void fiber_init(fiber *f) {
    if (!f->stack) {
        char *m = (char *)mmap(nullptr, EMU_STACK_BYTES + EMU_PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            api_fail("cannot map a fiber stack");
        mprotect(m, EMU_PAGE, PROT_NONE); /* the guard below the stack */
        f->stack = m + EMU_PAGE;
    }
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f->stack, EMU_STACK_BYTES);
#endif
    uint64_t *top = (uint64_t *)(f->stack + EMU_STACK_BYTES);
    top[-1] = 0;                     /* fiber_main's return address: never used */
    top[-2] = (uint64_t)&fiber_main; /* at a 16-byte boundary: entered as if called */
    for (int i = 3; i <= 8; i++)
        top[-i] = 0; /* rbp rbx r12 r13 r14 r15 */
    f->sp = &top[-8];
    f->state = F_RUN;
    f->fake_stack = nullptr;
}

uint3 tid3(int t) {
    return uint3{(unsigned)t % blockDim.x, (unsigned)(t / blockDim.x) % blockDim.y,
                 (unsigned)(t / (blockDim.x * blockDim.y))};
}

std::string thread_name(int t) {
    const uint3 i = tid3(t);
    char s[64];
    snprintf(s, sizeof s, "(%u,%u,%u)", i.x, i.y, i.z);
    return s;
}

void resume(fiber *f) {
    cur = f;
    threadIdx = f->idx;
    void *fake = nullptr;
    asan_start(&fake, f->stack, EMU_STACK_BYTES);
    dalle_emu_swap(&main_sp, f->sp);
    asan_finish(fake, nullptr, nullptr);
    cur = nullptr;
}

[[noreturn]] void block_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void block_fail(const char *fmt, ...) {
    char w[128];
    snprintf(w, sizeof w, "kernel %s, block (%u,%u,%u): ", cfg_now->name, blockIdx.x, blockIdx.y,
             blockIdx.z);
    va_list ap;
    va_start(ap, fmt);
    vfail(w, fmt, ap);
}

bool same_site(const char *fa, int la, const char *fb, int lb) {
    return la == lb && (fa == fb || !strcmp(fa, fb));
}

/* every thread is done or waits: open the barrier, or report why the block is stuck */
void settle(int done) {
    int nbar = 0, first = -1;
    for (int t = 0; t < nthreads; t++)
        if (fibers[t].state == F_BARRIER && nbar++ == 0)
            first = t;
    if (nbar == nthreads - done && nbar > 0) {
        const fiber &a = fibers[first];
        if (done > 0) {
            int gone = 0;
            while (fibers[gone].state != F_DONE)
                gone++;
            block_fail("__syncthreads at %s:%d is not reached by every thread: thread %s "
                       "exited (%d of %d threads exited)",
                       a.file, a.line, thread_name(gone).c_str(), done, nthreads);
        }
        for (int t = 0; t < nthreads; t++)
            if (!same_site(fibers[t].file, fibers[t].line, a.file, a.line))
                block_fail("__syncthreads in divergent code: thread %s waits at %s:%d, thread "
                           "%s at %s:%d",
                           thread_name(first).c_str(), a.file, a.line, thread_name(t).c_str(),
                           fibers[t].file, fibers[t].line);
        for (int t = 0; t < nthreads; t++)
            fibers[t].state = F_RUN;
        nrun = nthreads;
        return;
    }
    for (int t = 0; t < nthreads; t++) /* a warp operation that cannot complete */
        if (fibers[t].state == F_WARP) {
            const fiber &w = fibers[t];
            const int base = t & ~31;
            for (int l = 0; l < 32; l++) {
                if (!(w.mask >> l & 1u))
                    continue;
                const fiber &o = fibers[base + l];
                if (o.state == F_WARP)
                    continue;
                block_fail("deadlock: thread %s waits at the warp operation at %s:%d for lane "
                           "%d (thread %s), which %s",
                           thread_name(t).c_str(), w.file, w.line, l, thread_name(base + l).c_str(),
                           o.state == F_DONE ? "exited" : "waits at __syncthreads");
            }
        }
    block_fail("deadlock: no thread can run");
}

/* the lanes of `mask` in warp `base` have all arrived: check they agree, compute */
void complete_warp(int base, unsigned mask, const fiber &me) {
    const int w = me.width;
    if (w < 1 || w > 32 || (w & (w - 1)))
        block_fail("warp operation at %s:%d: width %d is not a power of two ≤ 32", me.file, me.line,
                   w);
    uint64_t ballot = 0;
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1u))
            continue;
        const fiber &o = fibers[base + l];
        if (o.kind != me.kind || o.mask != mask || !same_site(o.file, o.line, me.file, me.line))
            block_fail("divergent warp operations: thread %s at %s:%d (mask %08x), thread %s at "
                       "%s:%d (mask %08x)",
                       thread_name((int)(&me - fibers)).c_str(), me.file, me.line, me.mask,
                       thread_name(base + l).c_str(), o.file, o.line, o.mask);
        ballot |= (uint64_t)(o.value != 0) << l;
    }
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1u))
            continue;
        fiber &o = fibers[base + l];
        const int seg = l & ~(w - 1);
        int src = l;
        switch (o.kind) {
        case W_SHFL_XOR: src = l ^ o.arg; break;
        case W_SHFL_UP: src = l - o.arg; break;
        case W_SHFL_DOWN: src = l + o.arg; break;
        case W_SHFL_IDX: src = seg + (o.arg & (w - 1)); break;
        default: break;
        }
        if (src < seg || src >= seg + w)
            src = l; /* outside the segment: own value */
        if (!(mask >> src & 1u))
            block_fail("warp operation at %s:%d: lane %d reads lane %d, which is not in the "
                       "mask %08x",
                       o.file, o.line, l, src, mask);
        switch (o.kind) {
        case W_BALLOT: o.result = ballot; break;
        case W_ANY: o.result = ballot != 0; break;
        case W_ALL: o.result = ballot == (uint64_t)mask; break;
        case W_SYNC: o.result = 0; break;
        default: o.result = fibers[base + src].value; break;
        }
        o.state = F_RUN;
        nrun++;
    }
    arrived[base / 32] = 0;
}

/* Each warp in turn runs as far as it can (its lanes in order, again and again, until each
 * one is done or waits at a barrier), warps in ascending order, or everything reversed: a
 * warp runs ahead of the others up to the next barrier, which is the schedule that exposes
 * a missing one. */
void run_block(bool reverse) {
    for (int t = 0; t < nthreads; t++)
        fiber_init(&fibers[t]);
    const int nwarps = (nthreads + 31) / 32;
    for (int w = 0; w < nwarps; w++)
        arrived[w] = 0;
    nrun = nthreads;
    ndone = 0;
    reversed = reverse;
    for (;;) {
        for (int k = 0; k < nwarps; k++) {
            const int w = reverse ? nwarps - 1 - k : k;
            const int lanes = nthreads - 32 * w < 32 ? nthreads - 32 * w : 32;
            for (bool ran = true; ran;) {
                ran = false;
                for (int j = 0; j < lanes; j++) {
                    fiber *f = &fibers[32 * w + (reverse ? lanes - 1 - j : j)];
                    if (f->state == F_RUN)
                        resume(f), ran = true;
                }
            }
        }
        if (ndone == nthreads)
            return;
        if (!nrun)
            settle(ndone);
    }
}

} // namespace

uint64_t warp_step(warp_kind kind, unsigned mask, uint64_t value, int arg, int width,
                   const char *file, int line) {
    fiber *f = cur;
    if (!f)
        api_fail("%s:%d: a warp operation outside a kernel", file, line);
    const int t = (int)(f - fibers), lane = t & 31, base = t & ~31;
    if (!(mask >> lane & 1u))
        block_fail("thread %s calls the warp operation at %s:%d with mask %08x, which leaves "
                   "out its own lane %d",
                   thread_name(t).c_str(), file, line, mask, lane);
    if (base + 32 > nthreads && (mask >> (nthreads - base)))
        block_fail("the warp operation at %s:%d names lanes past the block's %d threads", file,
                   line, nthreads);
    f->kind = kind, f->mask = mask, f->value = value, f->arg = arg, f->width = width;
    f->file = file, f->line = line;
    f->state = F_WARP;
    nrun--;
    if (++arrived[base / 32] == __builtin_popcount(mask)) {
        complete_warp(base, mask, *f); /* every lane runnable again, this one included */
        to_scheduler();
    } else {
        switch_away(false);
    }
    return f->result;
}

int lane_id() {
    return (int)(cur - fibers) & 31;
}

float *warp_tile() {
    return tiles[(cur - fibers) / 32];
}

void barrier(const char *file, int line) {
    fiber *f = cur;
    if (!f)
        api_fail("%s:%d: __syncthreads outside a kernel", file, line);
    f->file = file, f->line = line;
    f->state = F_BARRIER;
    nrun--;
    switch_away(false);
}

void run_grid(const launch_cfg &cfg, const std::function<void()> &fn, bool reverse) {
    cfg_now = &cfg;
    body = &fn;
    gridDim = cfg.grid;
    blockDim = cfg.block;
    nthreads = (int)(cfg.block.x * cfg.block.y * cfg.block.z);
    for (int t = 0; t < nthreads; t++)
        fibers[t].idx = tid3(t);
#if EMU_ASAN
    pthread_attr_t at;
    void *lo;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &lo, &main_size);
    pthread_attr_destroy(&at);
    main_bottom = lo;
#endif
    const uint64_t nb = (uint64_t)cfg.grid.x * cfg.grid.y * cfg.grid.z;
    for (uint64_t k = 0; k < nb; k++) {
        const uint64_t b = reverse ? nb - 1 - k : k;
        blockIdx = uint3{(unsigned)(b % cfg.grid.x), (unsigned)(b / cfg.grid.x % cfg.grid.y),
                         (unsigned)(b / ((uint64_t)cfg.grid.x * cfg.grid.y))};
        new_block();
        run_block(reverse);
    }
    cfg_now = nullptr;
}

const char *current_kernel() {
    return cfg_now ? cfg_now->name : nullptr;
}

std::string where() {
    if (!cfg_now)
        return "outside any kernel";
    char s[160];
    snprintf(s, sizeof s, "kernel %s, block (%u,%u,%u), thread %s", cfg_now->name, blockIdx.x,
             blockIdx.y, blockIdx.z,
             cur ? thread_name((int)(cur - fibers)).c_str() : "(scheduler)");
    return s;
}

/* the fiber stack's guard page holding addr, if any (for the fault report) */
bool in_stack_guard(const void *addr) {
    for (int t = 0; t < EMU_MAX_THREADS && fibers[t].stack; t++)
        if ((const char *)addr >= fibers[t].stack - EMU_PAGE &&
            (const char *)addr < fibers[t].stack)
            return true;
    return false;
}

void kernel_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(where() + ": ", fmt, ap);
}

} // namespace dalle_emu

/* wmma's documented operand rules: a 256-bit aligned pointer, ldm a multiple of 16 bytes */
void nvcuda::wmma::check_tile(const void *p, unsigned ldm, size_t elem, const char *what,
                              const char *file, int line) {
    if ((uintptr_t)p % 32 || (ldm * elem) % 16)
        dalle_emu::kernel_fail("%s at %s:%d: pointer %p must be 32-byte aligned and ldm %u a "
                               "multiple of %zu elements",
                               what, file, line, p, ldm, 16 / elem);
}
