/* version.h — the release version, and the `--version` text of dalle-cli and dalle-server.
 *
 * Contract: dalle_version_print writes two lines, "PROGRAM VERSION (git DESCRIBE)" and
 * "backends: …" (dalle_backends_describe). DALLE_GIT_DESCRIBE is `git describe --always
 * --dirty` of the checkout, given by the Makefile to the two objects that print it ("unknown"
 * outside a git checkout).
 */
#ifndef DALLE_COMMON_VERSION_H
#define DALLE_COMMON_VERSION_H

#include <stdio.h>

#include "dalle.h"

#define DALLE_VERSION "0.1.0"

#ifndef DALLE_GIT_DESCRIBE
#define DALLE_GIT_DESCRIBE "unknown"
#endif

static inline void dalle_version_print(FILE *f, const char *program) {
    char backends[256];
    dalle_backends_describe(backends, sizeof backends);
    fprintf(f, "%s %s (git %s)\nbackends: %s\n", program, DALLE_VERSION, DALLE_GIT_DESCRIBE,
            backends);
}

#endif /* DALLE_COMMON_VERSION_H */
