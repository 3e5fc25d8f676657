/* launch.cc — one kernel launch on the emulated device: the dynamic shared memory arena
 * of its blocks, the two schedules and their comparison, the per-kernel statistics behind
 * the `make gpu-emu` table, and the report of a fault inside a kernel.
 *
 *  - Schedules (DALLE_EMU_SCHEDULES): "both" (default) snapshots every device allocation a
 *    writable pointer argument points into, runs the grid with blocks and threads in
 *    forward order, keeps the result, restores the snapshot, runs it reversed and requires
 *    the same bytes; "forward" or "reverse" runs once.
 *  - Dynamic shared memory: a fresh arena per block, filled with 0xff (a NaN to any float
 *    read before a write). Its end touches a guard page (or, under AddressSanitizer, it is
 *    a heap block of exactly the launch's bytes); the few padding bytes before the guard are
 *    checked after each block.
 *  - Statistics (DALLE_EMU_STATS=FILE): at exit one line per kernel is appended to FILE:
 *    name, launches, blocks, launches compared, instantiations, shapes, ops, max error
 *    (tools/gpu/emu_table.sh prints the table). dalle_emu_attribute(op, err), called by
 *    tests/gpu/gpu_ops.c after each comparison, charges err to the kernels launched since.
 */
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

#include "kernels/cuda/emu/internal.h"

#if EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#define EMU_MAX_SHAPES 3 /* shapes kept per kernel for the table */

namespace dalle_emu {
namespace {

struct kstat {
    long launches = 0, blocks = 0, compared = 0;
    std::set<const void *> inst;
    std::vector<std::string> shapes;
    std::set<std::string> ops;
    double err = -1;
};

std::mutex mu;
std::map<std::string, kstat> stats;
std::vector<std::string> since; /* kernels launched since the last attribution */
#if !EMU_ASAN
char *arena; /* mapped: arena_map bytes, the last page the guard */
size_t arena_map;
#endif
char *dyn;        /* this launch's dynamic shared memory */
size_t dyn_bytes; /* its size */
size_t dyn_span;  /* from dyn to the guard page */

enum sched { S_BOTH, S_FORWARD, S_REVERSE };
sched schedules() {
    const char *v = getenv("DALLE_EMU_SCHEDULES");
    if (!v || !*v || !strcmp(v, "both"))
        return S_BOTH;
    if (!strcmp(v, "forward"))
        return S_FORWARD;
    if (!strcmp(v, "reverse"))
        return S_REVERSE;
    api_fail("DALLE_EMU_SCHEDULES must be both, forward or reverse, got '%s'", v);
}

void dyn_arena(size_t bytes) {
#if EMU_ASAN
    free(dyn);
    dyn = (char *)malloc(bytes ? bytes : 1);
    dyn_bytes = dyn_span = bytes;
#else
    const size_t span = (bytes + 15) / 16 * 16;
    const size_t need = (span + EMU_PAGE - 1) / EMU_PAGE * EMU_PAGE + EMU_PAGE;
    if (need > arena_map) {
        if (arena)
            munmap(arena, arena_map);
        arena =
            (char *)mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (arena == MAP_FAILED)
            api_fail("cannot map %zu bytes of shared memory", bytes);
        arena_map = need;
        mprotect(arena + need - EMU_PAGE, EMU_PAGE, PROT_NONE);
    }
    dyn = arena + arena_map - EMU_PAGE - span;
    dyn_bytes = bytes;
    dyn_span = span;
#endif
}

#if !EMU_ASAN
void fault_report(int sig, siginfo_t *si, void *) {
    const char *a = (const char *)si->si_addr;
    const char *what = "an address outside device memory";
    if (arena && a >= arena + arena_map - EMU_PAGE && a < arena + arena_map)
        what = "past the end of the dynamic shared memory";
    else if (in_stack_guard(a))
        what = "the thread's stack guard (stack overflow)";
    else if (alloc_guard(a))
        what = "past the end of a device allocation";
    fprintf(stderr, "emulated device: %s: invalid access at %p: %s\n", where().c_str(), si->si_addr,
            what);
    signal(sig, SIG_DFL);
}

#else
void death_report() {
    if (current_kernel())
        fprintf(stderr, "emulated device: %s\n", where().c_str());
}
#endif

void write_stats() {
    const char *path = getenv("DALLE_EMU_STATS");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    for (const auto &[name, k] : stats) {
        std::string shapes, ops;
        for (const auto &s : k.shapes)
            shapes += (shapes.empty() ? "" : " ") + s;
        for (const auto &o : k.ops)
            ops += (ops.empty() ? "" : ",") + o;
        fprintf(f, "%s\t%ld\t%ld\t%ld\t%zu\t%s\t%s\t%.3e\n", name.c_str(), k.launches, k.blocks,
                k.compared, k.inst.size(), shapes.c_str(), ops.empty() ? "-" : ops.c_str(), k.err);
    }
    fclose(f);
}

void once() {
    static bool done;
    if (done)
        return;
    done = true;
    atexit(write_stats);
#if EMU_ASAN
    __sanitizer_set_death_callback(death_report);
#else
    static char alt[1 << 16];
    stack_t ss = {};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa = {};
    sa.sa_sigaction = fault_report;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
#endif
}

struct snapshot {
    char *base;
    size_t size;
    std::vector<char> before, after;
};

void count(const std::string &name, const std::string &shape, long blocks, bool compared,
           const void *inst) {
    kstat &k = stats[name];
    k.launches++;
    k.blocks += blocks;
    k.compared += compared;
    if (inst)
        k.inst.insert(inst);
    bool seen = false;
    for (const auto &s : k.shapes)
        seen |= s == shape;
    if (!seen && k.shapes.size() < EMU_MAX_SHAPES)
        k.shapes.push_back(shape);
    since.push_back(name);
}

} // namespace

void new_block() {
    if (dyn_span)
        memset(dyn, 0xff, dyn_span);
}

void *dyn_smem() {
    if (!current_kernel())
        api_fail("dynamic shared memory outside a kernel");
    return dyn;
}

static void check_padding() {
    for (size_t i = dyn_bytes; i < dyn_span; i++)
        if ((unsigned char)dyn[i] != 0xff)
            kernel_fail("wrote %zu bytes past the end of the %zu bytes of dynamic shared memory",
                        i - dyn_bytes + 1, dyn_bytes);
}

static void run_checked(const launch_rec &r, bool reverse) {
    run_grid(r.cfg, r.body, reverse);
    check_padding();
}

/* every allocation a writable argument points into, once */
static std::vector<snapshot> writable_allocs(const launch_rec &r) {
    std::vector<snapshot> snaps;
    for (void *p : r.writable) {
        char *base;
        size_t size;
        if (!find_alloc(p, 1, &base, &size))
            api_fail("kernel %s: pointer argument %p is not device memory", r.cfg.name, p);
        bool dup = false;
        for (const auto &s : snaps)
            dup |= s.base == base;
        if (!dup)
            snaps.push_back({base, size, {}, {}});
    }
    return snaps;
}

static void check_tails(const launch_rec &r, const std::vector<snapshot> &snaps) {
    for (const auto &s : snaps)
        if (!alloc_tail_intact(s.base))
            api_fail("kernel %s wrote past the end of the %zu-byte device allocation at %p",
                     r.cfg.name, s.size, (void *)s.base);
}

void run_launch(const launch_rec &r) {
    std::lock_guard<std::mutex> lock(mu);
    once();
    static const sched mode = schedules();
    dyn_arena(r.cfg.smem);
    const launch_cfg &c = r.cfg;
    char shape[96];
    snprintf(shape, sizeof shape, "%ux%ux%u/%u", c.grid.x, c.grid.y, c.grid.z,
             c.block.x * c.block.y * c.block.z);
    const long blocks = (long)c.grid.x * c.grid.y * c.grid.z;
    std::string name = c.name;
    const size_t lt = name.find('<');
    if (lt != std::string::npos)
        name.resize(lt); /* instantiations share a row */
    std::vector<snapshot> snaps = writable_allocs(r);
    if (mode != S_BOTH) {
        run_checked(r, mode == S_REVERSE);
        check_tails(r, snaps);
        count(name, shape, blocks, false, c.fn);
        return;
    }
    for (auto &s : snaps)
        s.before.assign(s.base, s.base + s.size);
    run_checked(r, false);
    check_tails(r, snaps);
    for (auto &s : snaps) {
        s.after.assign(s.base, s.base + s.size);
        memcpy(s.base, s.before.data(), s.size);
    }
    run_checked(r, true);
    for (const auto &s : snaps) {
        if (!memcmp(s.base, s.after.data(), s.size))
            continue;
        size_t first = SIZE_MAX, n = 0;
        for (size_t i = 0; i < s.size; i++)
            if (s.base[i] != s.after[i])
                n++, first = first == SIZE_MAX ? i : first;
        api_fail("kernel %s (grid %s): the forward and the reversed schedule wrote different "
                 "bytes: %zu of the %zu bytes at %p differ, the first at offset %zu (forward "
                 "%02x, reversed %02x) — a missing __syncthreads or a race between threads",
                 c.name, shape, n, s.size, (void *)s.base, first, (unsigned char)s.after[first],
                 (unsigned char)s.base[first]);
    }
    count(name, shape, blocks, true, c.fn);
}

void note_call(const char *name, const std::string &shape, bool compared) {
    std::lock_guard<std::mutex> lock(mu);
    once();
    count(name, shape, 0, compared, nullptr);
}

void vfail(const std::string &where, const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "emulated device: %s", where.c_str());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    abort();
}

void api_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail("", fmt, ap);
}

} // namespace dalle_emu

extern "C" void dalle_emu_attribute(const char *op, double err) {
    std::lock_guard<std::mutex> lock(dalle_emu::mu);
    for (const auto &name : dalle_emu::since) {
        auto &k = dalle_emu::stats[name];
        k.ops.insert(op);
        if (!(err <= k.err))
            k.err = err;
    }
    dalle_emu::since.clear();
}
