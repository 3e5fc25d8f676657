/* dalle.h — public C API of the dalle-server engine.
 *
 * Contract: a dalle_model is loaded once and is read-only afterwards, so any number of
 * threads may share one. Everything a generation writes (KV cache, activations, RNG state)
 * lives in a dalle_state; a state is used by one thread at a time. Every function that can
 * fail on input returns a dalle_status and, when given a dalle_error, a one-line message.
 */
#ifndef DALLE_H
#define DALLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DALLE_OK = 0,
    DALLE_ERR_INVALID_ARG,  /* bad input from the caller (prompt, parameter range) */
    DALLE_ERR_IO,           /* a file could not be opened, read or mapped */
    DALLE_ERR_FORMAT,       /* a model file is damaged or does not match config.json */
    DALLE_ERR_NOMEM,        /* an allocation failed */
    DALLE_ERR_UNSUPPORTED,  /* valid but not implemented here (dtype, backend) */
    DALLE_ERR_BACKEND,      /* the compute backend failed */
    DALLE_ERR_CANCELLED,    /* the caller asked to stop */
} dalle_status;

/* A status plus a human-readable one-line message. */
typedef struct {
    dalle_status status;
    char msg[512];
} dalle_error;

const char *dalle_status_str(dalle_status s);

#ifdef __cplusplus
}
#endif
#endif /* DALLE_H */
