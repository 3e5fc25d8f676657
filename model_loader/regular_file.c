/* regular_file.c — refusing FIFOs, devices and directories as model files (regular_file.h). */
#include "model_loader/regular_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

static const char *kind(mode_t m) {
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISSOCK(m))
        return "a socket";
    return "another file type";
}

static dalle_status refuse(const char *path, mode_t m, dalle_error *err) {
    return dalle_error_set(err, DALLE_ERR_IO, "%s: not a regular file (%s)", path, kind(m));
}

dalle_status dalle_regular_file_open(const char *path, int *fd, size_t *size, dalle_error *err) {
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (*fd < 0)
        return dalle_error_set(err, DALLE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(*fd, &sb) != 0) {
        const int e = errno;
        close(*fd);
        *fd = -1;
        return dalle_error_set(err, DALLE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(*fd);
        *fd = -1;
        return refuse(path, sb.st_mode, err);
    }
    *size = (size_t)sb.st_size;
    return DALLE_OK;
}

dalle_status dalle_regular_file_check(const char *path, dalle_error *err) {
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return refuse(path, sb.st_mode, err);
    return DALLE_OK;
}
