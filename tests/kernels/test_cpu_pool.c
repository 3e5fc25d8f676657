/* test_cpu_pool.c — the CPU backend's threads (kernels/cpu/pool.c, dalle_cpu_for): every
 * item runs exactly once with a thread index below the backend's thread count, a serial call
 * runs in order on the caller, a call from inside an item runs there, jobs published back to
 * back and jobs after the workers fell asleep complete, and backends come and go with their
 * threads.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"

typedef struct {
    _Atomic int *runs;   // [n] times each item ran
    _Atomic int *thread; // [n] the thread index it got
    int threads;
    _Atomic int bad_index;
} count_ctx;

static void count_item(void *ctx, int64_t i, int thread) {
    count_ctx *c = ctx;
    atomic_fetch_add(&c->runs[i], 1);
    atomic_store(&c->thread[i], thread);
    if (thread < 0 || thread >= c->threads)
        atomic_store(&c->bad_index, 1);
}

/* Runs n items on be and checks each ran once; returns how many distinct threads ran some. */
static int run_and_count(dalle_backend *be, int threads, int64_t n, int par) {
    count_ctx c = {.runs = calloc((size_t)n, sizeof(_Atomic int)),
                   .thread = calloc((size_t)n, sizeof(_Atomic int)),
                   .threads = threads};
    cr_assert(c.runs && c.thread);
    dalle_cpu_for(be, n, par, count_item, &c);
    int seen[64] = {0}, distinct = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&c.runs[i]), 1, "item %lld ran %d times", (long long)i,
                     atomic_load(&c.runs[i]));
        const int t = atomic_load(&c.thread[i]);
        if (t >= 0 && t < 64 && !seen[t]++)
            distinct++;
    }
    cr_assert_eq(atomic_load(&c.bad_index), 0, "a thread index outside [0, %d)", threads);
    free(c.runs);
    free(c.thread);
    return distinct;
}

Test(cpu_pool, every_item_runs_once) {
    for (int threads = 1; threads <= 4; threads++) {
        dalle_backend *be = dalle_backend_cpu_new(threads);
        cr_assert(be);
        for (int64_t n = 0; n <= 70; n++)
            run_and_count(be, threads, n, 1);
        run_and_count(be, threads, 100003, 1);
        be->ops->destroy(be);
    }
}

typedef struct {
    int64_t order[64];
    int count, thread_max;
} order_ctx;

static void order_item(void *ctx, int64_t i, int thread) {
    order_ctx *o = ctx;
    o->order[o->count++] = i;
    if (thread > o->thread_max)
        o->thread_max = thread;
}

Test(cpu_pool, serial_call_runs_in_order_on_the_caller) {
    dalle_backend *be = dalle_backend_cpu_new(4);
    order_ctx o = {.count = 0};
    dalle_cpu_for(be, 64, 0, order_item, &o);
    cr_assert_eq(o.count, 64);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(o.order[i], i);
    cr_assert_eq(o.thread_max, 0, "a serial call ran on thread %d", o.thread_max);
    be->ops->destroy(be);
}

typedef struct {
    dalle_backend *be;
    _Atomic int inner_runs, wrong_thread;
} nest_ctx;

typedef struct {
    nest_ctx *outer;
    int thread;
} inner_ctx;

static void inner_item(void *ctx, int64_t i, int thread) {
    inner_ctx *in = ctx;
    (void)i;
    atomic_fetch_add(&in->outer->inner_runs, 1);
    if (thread != in->thread)
        atomic_store(&in->outer->wrong_thread, 1);
}

static void outer_item(void *ctx, int64_t i, int thread) {
    nest_ctx *n = ctx;
    (void)i;
    inner_ctx in = {.outer = n, .thread = thread};
    dalle_cpu_for(n->be, 10, 1, inner_item, &in); /* runs here, on this thread */
}

Test(cpu_pool, call_inside_an_item_runs_on_that_thread) {
    dalle_backend *be = dalle_backend_cpu_new(3);
    nest_ctx n = {.be = be};
    dalle_cpu_for(be, 50, 1, outer_item, &n);
    cr_assert_eq(atomic_load(&n.inner_runs), 500);
    cr_assert_eq(atomic_load(&n.wrong_thread), 0);
    be->ops->destroy(be);
}

static void sum_item(void *ctx, int64_t i, int thread) {
    (void)thread;
    atomic_fetch_add((_Atomic int64_t *)ctx, i + 1);
}

Test(cpu_pool, back_to_back_and_after_sleep) {
    dalle_backend *be = dalle_backend_cpu_new(2);
    _Atomic int64_t sum = 0;
    for (int job = 0; job < 20000; job++) /* the workers never get to sleep */
        dalle_cpu_for(be, 2 + job % 3, 1, sum_item, &sum);
    int64_t want = 0;
    for (int job = 0; job < 20000; job++)
        want += (2 + job % 3) * (3 + job % 3) / 2;
    cr_assert_eq(atomic_load(&sum), want);
    for (int round = 0; round < 5; round++) { /* past the spin: woken from the futex */
        nanosleep(&(struct timespec){.tv_nsec = 3000000}, NULL);
        atomic_store(&sum, 0);
        dalle_cpu_for(be, 1000, 1, sum_item, &sum);
        cr_assert_eq(atomic_load(&sum), 1000 * 1001 / 2);
    }
    be->ops->destroy(be);
}

Test(cpu_pool, backends_come_and_go) {
    for (int i = 0; i < 200; i++) {
        dalle_backend *be = dalle_backend_cpu_new(1 + i % 4);
        cr_assert(be);
        if (i % 2)
            run_and_count(be, 1 + i % 4, 257, 1);
        be->ops->destroy(be); /* joins the workers, awake or asleep */
    }
}

typedef struct {
    _Atomic int started;
    _Atomic int timed_out;
} meet_ctx;

/* Each of the threads items waits until all have started: only works when they run at once. */
static void meet_item(void *ctx, int64_t i, int thread) {
    meet_ctx *m = ctx;
    (void)i;
    (void)thread;
    atomic_fetch_add(&m->started, 1);
    const time_t until = time(NULL) + 20;
    while (atomic_load(&m->started) < 3)
        if (time(NULL) > until) {
            atomic_store(&m->timed_out, 1);
            return;
        }
}

Test(cpu_pool, items_run_on_every_thread_at_once) {
    dalle_backend *be = dalle_backend_cpu_new(3);
    for (int round = 0; round < 3; round++) {
        meet_ctx m = {0};
        dalle_cpu_for(be, 3, 1, meet_item, &m);
        cr_assert_eq(atomic_load(&m.timed_out), 0, "the 3 items never ran at the same time");
        nanosleep(&(struct timespec){.tv_nsec = 1000000 * round}, NULL);
    }
    be->ops->destroy(be);
}
