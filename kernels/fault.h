/* fault.h — fatal device faults: the report path shared by every backend, and the
 * fault-injection wrapper that lets CPU-only tests drive that path (dalle.h, "device
 * faults").
 *
 * Contract: dalle_fault never returns. It calls the handler set with
 * dalle_set_fault_handler (which must not return either), or prints the message and aborts
 * when there is none. dalle_fault_inject_arm reads DALLE_FAULT_INJECT once per backend:
 * unset or empty → the backend is untouched; "step:N" (N ≥ 1) → the backend's N-th
 * `sample` call (one per decode step) reports a fault instead of sampling; anything else →
 * DALLE_ERR_INVALID_ARG.
 */
#ifndef DALLE_KERNELS_FAULT_H
#define DALLE_KERNELS_FAULT_H

#include "dalle.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 1, 2)))
#endif
void dalle_fault(const char *fmt, ...);

dalle_status dalle_fault_inject_arm(dalle_backend *be, dalle_error *err);

#ifdef __cplusplus
}
#endif
#endif /* DALLE_KERNELS_FAULT_H */
