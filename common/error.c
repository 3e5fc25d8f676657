/* error.c — dalle_error_set and the status names (see error.h). */
#include "error.h"

#include <stdarg.h>

dalle_status dalle_error_set(dalle_error *err, dalle_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

const char *dalle_status_str(dalle_status s) {
    switch (s) {
    case DALLE_OK: return "ok";
    case DALLE_ERR_INVALID_ARG: return "invalid argument";
    case DALLE_ERR_IO: return "i/o error";
    case DALLE_ERR_FORMAT: return "bad model file";
    case DALLE_ERR_NOMEM: return "out of memory";
    case DALLE_ERR_UNSUPPORTED: return "unsupported";
    case DALLE_ERR_BACKEND: return "backend error";
    case DALLE_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}
