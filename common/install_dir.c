/* install_dir.c — the bundled demo model's directory, relative to the executable
 * (contract in install_dir.h). */
#include "common/install_dir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dalle_demo_model_dir(char *out, size_t size) {
    char exe[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(out, size, "(the executable's folder: /proc/self/exe unreadable)");
        return -1;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    *slash = 0; /* readlink gives an absolute path: there is a '/' */
    static const char *const places[] = {"../" DALLE_INSTALL_DATA "/models/demo", "../models/demo"};
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        char dir[PATH_MAX + 64], cfg[PATH_MAX + 80], real[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", exe, places[i]);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (access(cfg, R_OK) == 0 && realpath(dir, real)) {
            snprintf(out, size, "%s", real);
            return 0;
        }
    }
    snprintf(out, size, "%s/%s", exe, places[0]);
    return -1;
}
