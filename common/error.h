/* error.h — error reporting and invariant checks shared by every part of the engine.
 *
 * Contract: dalle_error_set() fills an optional dalle_error and returns its status, so a
 * failing function can `return dalle_error_set(err, DALLE_ERR_FORMAT, "...")`.
 * DALLE_ASSERT is for broken invariants only (never for request input): it prints
 * file:line and aborts, in every build type.
 */
#ifndef DALLE_COMMON_ERROR_H
#define DALLE_COMMON_ERROR_H

#include <stdio.h>
#include <stdlib.h>

#include "dalle.h"

#if defined(__GNUC__)
#define DALLE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DALLE_PRINTF(a, b)
#endif

dalle_status dalle_error_set(dalle_error *err, dalle_status status, const char *fmt, ...)
    DALLE_PRINTF(3, 4);

#define DALLE_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__, __func__,     \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* DALLE_COMMON_ERROR_H */
