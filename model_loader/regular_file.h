/* regular_file.h — model files must be regular files.
 *
 * Contract: a FIFO, a device, a socket or a directory where a model file is expected is
 * refused with one line naming the path and what it is, without blocking: opening a FIFO
 * for reading would wait for a writer forever. dalle_regular_file_open() opens read-only
 * (O_NONBLOCK, close-on-exec) and checks the opened file, so the check and the use see the
 * same file; dalle_regular_file_check() only looks (for files that a later stage opens).
 * A path that does not exist passes the check (the stage that opens it reports it).
 */
#ifndef DALLE_MODEL_LOADER_REGULAR_FILE_H
#define DALLE_MODEL_LOADER_REGULAR_FILE_H

#include <stddef.h>

#include "dalle.h"

/* *fd and *size of the regular file at path, or DALLE_ERR_IO. */
dalle_status dalle_regular_file_open(const char *path, int *fd, size_t *size, dalle_error *err);

dalle_status dalle_regular_file_check(const char *path, dalle_error *err);

#endif /* DALLE_MODEL_LOADER_REGULAR_FILE_H */
