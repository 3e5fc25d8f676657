/* fault.c — the device-fault handler and the fault-injection backend wrapper (fault.h).
 *
 * The wrapper does not copy or forward the backend: it gives the backend its own copy of
 * the ops table whose `sample_dev` (the decode step's sampling) counts calls and whose `destroy`
 * frees the copy, so every other op runs the real code unchanged on the real impl. The copy starts
 * with the table, so `(fault_ops *)be->ops` recovers it.
 */
#include "kernels/fault.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static _Atomic(dalle_fault_handler) fault_fn;
static void *_Atomic fault_user;

void dalle_set_fault_handler(dalle_fault_handler fn, void *user) {
    atomic_store(&fault_user, user);
    atomic_store(&fault_fn, fn);
}

void dalle_fault(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const dalle_fault_handler fn = atomic_load(&fault_fn);
    if (fn)
        fn(msg, atomic_load(&fault_user));
    fprintf(stderr, "fatal device fault: %s\n", msg);
    fflush(stderr);
    abort();
}

typedef struct {
    dalle_backend_ops ops; /* first: be->ops points here */
    const dalle_backend_ops *real;
    long calls, fault_at;
} fault_ops;

static void inject_sample(dalle_backend *be, int32_t *rows, int32_t *codes, const int32_t *code_at,
                          const float *logits, int B, int V, int ld,
                          const dalle_sample_params *params, const int32_t *step) {
    fault_ops *f = (fault_ops *)be->ops;
    if (++f->calls == f->fault_at)
        dalle_fault("%s backend: injected fault at decode step %ld (DALLE_FAULT_INJECT)",
                    f->real->name, f->calls);
    f->real->sample_dev(be, rows, codes, code_at, logits, B, V, ld, params, step);
}

static void inject_destroy(dalle_backend *be) {
    fault_ops *f = (fault_ops *)be->ops;
    be->ops = f->real;
    f->real->destroy(be);
    free(f);
}

dalle_status dalle_fault_inject_arm(dalle_backend *be, dalle_error *err) {
    const char *v = getenv("DALLE_FAULT_INJECT");
    if (!v || !*v)
        return DALLE_OK;
    char *end = NULL;
    const long n = strncmp(v, "step:", 5) ? 0 : strtol(v + 5, &end, 10);
    if (n < 1 || !end || *end)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG,
                               "DALLE_FAULT_INJECT must be step:N with N >= 1, got '%s'", v);
    fault_ops *f = calloc(1, sizeof *f);
    if (!f)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    f->real = be->ops;
    f->ops = *be->ops;
    f->ops.sample_dev = inject_sample;
    f->ops.destroy = inject_destroy;
    f->fault_at = n;
    be->ops = &f->ops;
    return DALLE_OK;
}
