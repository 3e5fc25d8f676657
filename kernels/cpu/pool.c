/* pool.c — the CPU backend's threads: `dalle_cpu_for` runs an op's items over the backend's
 * threads (the caller and threads − 1 workers that live as long as the backend).
 *
 * A decode step is ~140 ops of tens of microseconds each (~250 from a few images on), so the
 * hand-off must cost far less than an op. A worker that has finished its items waits for the
 * next op by spinning (with the CPU's pause hint) for DALLE_CPU_SPIN_NS, then sleeps on a
 * futex; the caller wakes sleepers only when there are any. Between the ops of a step the
 * workers never sleep, so an op starts on every thread within a microsecond; an idle backend
 * costs nothing after the spin. (A per-op OpenMP region with OMP_WAIT_POLICY=passive wakes
 * its threads through the kernel every time: ~28 µs per op on a 2-core VM, a quarter of a
 * one-image decode step.) docs/cpu-engine.md has the measurements.
 *
 * Items are claimed in increasing order from an atomic counter, in runs of n / (8 · threads)
 * (at least one: a GEMM's few heavy items one by one, a feature map's rows by the thousand), so
 * which thread runs an item depends on timing: an item's result must depend on the item only (the
 * thread index selects per-thread scratch, never what is computed). Every op of this backend
 * keeps that rule, so results do not depend on the thread count or the timing.
 *
 * Publication: the caller stores the job, bumps `gen` and runs items itself; a worker counts
 * itself in `users` before it reads the job and out after its last item, and the caller
 * clears the job and waits for `users` to drop to zero before its job (on its stack) goes
 * away. All atomics are sequentially consistent.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"

#define DALLE_CPU_SPIN_NS 200000 /* a worker spins this long for the next op, then sleeps */
#define DALLE_CPU_CHUNKS  8      /* items are claimed in runs of n / (this × threads), ≥ 1 */

typedef struct {
    dalle_cpu_task task;
    void *ctx;
    int64_t n, chunk; /* items claimed at a time */
    _Atomic int64_t next, done;
} pool_job;

struct dalle_cpu_pool {
    int threads; /* the caller + threads − 1 workers */
    pthread_t *workers;
    _Atomic uint32_t gen; /* bumped per job and at shutdown; the futex word */
    _Atomic int sleepers, users, stop;
    _Atomic(pool_job *) job;
};

typedef struct {
    dalle_cpu_pool *pool;
    int index;
} worker_arg;

static _Thread_local int in_item;  /* this thread is running an item: nested calls run inline */
static _Thread_local int my_index; /* this thread's index while it runs items */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expect) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Claims and runs items of j until none is left. */
static void run_items(pool_job *j, int index) {
    in_item = 1;
    my_index = index;
    for (int64_t i0; (i0 = atomic_fetch_add(&j->next, j->chunk)) < j->n;) {
        const int64_t i1 = i0 + j->chunk < j->n ? i0 + j->chunk : j->n;
        for (int64_t i = i0; i < i1; i++)
            j->task(j->ctx, i, index);
        atomic_fetch_add(&j->done, i1 - i0);
    }
    in_item = 0;
}

/* Returns once gen differs from seen: spinning first, then asleep. */
static uint32_t wait_gen(dalle_cpu_pool *p, uint32_t seen) {
    uint32_t g;
    const int64_t until = now_ns() + DALLE_CPU_SPIN_NS;
    for (int spins = 0;; spins++) {
        if ((g = atomic_load(&p->gen)) != seen)
            return g;
        cpu_relax();
        if ((spins & 63) == 63 && now_ns() > until)
            break;
    }
    atomic_fetch_add(&p->sleepers, 1);
    while ((g = atomic_load(&p->gen)) == seen)
        futex_wait(&p->gen, seen); /* returns at once when gen has moved on */
    atomic_fetch_sub(&p->sleepers, 1);
    return g;
}

static void *worker_main(void *arg) {
    const worker_arg a = *(worker_arg *)arg;
    free(arg);
    dalle_cpu_pool *p = a.pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        atomic_fetch_add(&p->users, 1);
        pool_job *j = atomic_load(&p->job);
        if (j)
            run_items(j, a.index);
        atomic_fetch_sub(&p->users, 1);
    }
}

static void pool_stop(dalle_cpu_pool *p, int started) {
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 0; i < started; i++)
        pthread_join(p->workers[i], NULL);
}

dalle_cpu_pool *dalle_cpu_pool_new(int threads) {
    dalle_cpu_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->threads = threads < 1 ? 1 : threads;
    p->workers = calloc((size_t)p->threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < p->threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a)
            *a = (worker_arg){.pool = p, .index = i};
        if (!a || pthread_create(&p->workers[i - 1], NULL, worker_main, a)) {
            free(a);
            pool_stop(p, i - 1);
            free(p->workers);
            free(p);
            return NULL;
        }
    }
    return p;
}

void dalle_cpu_pool_free(dalle_cpu_pool *p) {
    if (!p)
        return;
    pool_stop(p, p->threads - 1);
    free(p->workers);
    free(p);
}

void dalle_cpu_for(dalle_backend *be, int64_t n, int par, dalle_cpu_task task, void *ctx) {
    dalle_cpu_pool *p = dalle_cpu_of(be)->pool;
    if (n <= 0)
        return;
    if (!par || n == 1 || p->threads == 1 || in_item) { /* here, in order */
        const int index = in_item ? my_index : 0;
        for (int64_t i = 0; i < n; i++)
            task(ctx, i, index);
        return;
    }
    const int64_t chunk = n / ((int64_t)DALLE_CPU_CHUNKS * p->threads);
    pool_job j = {.task = task, .ctx = ctx, .n = n, .chunk = chunk > 1 ? chunk : 1};
    atomic_store(&p->job, &j);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers))
        futex_wake_all(&p->gen);
    run_items(&j, 0);
    for (int spins = 0; atomic_load(&j.done) < n; spins++)
        if (spins < 4096)
            cpu_relax();
        else
            sched_yield(); /* a worker holding an item lost its core */
    atomic_store(&p->job, NULL);
    for (int spins = 0; atomic_load(&p->users); spins++)
        if (spins < 4096)
            cpu_relax();
        else
            sched_yield();
}
