/* test_cuda_select.c — choosing the "cuda" backend by name, on any machine: with a CUDA
 * device the tiny model loads and reports backend "cuda"; built with CUDA but without a
 * device (CI) the load fails cleanly with DALLE_ERR_BACKEND "no CUDA device: …"; built
 * without nvcc it is an unknown backend (DALLE_ERR_UNSUPPORTED). Never a crash. The op-level
 * GPU checks are tests/gpu/gpu_ops.c and gpu_e2e.c (make gpu-check).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"
#ifdef DALLE_WITH_CUDA
#include "kernels/cuda/cuda.h"
#endif

static dalle_status load(const char *backend, dalle_error *err, dalle_model **m) {
    dalle_model_params p;
    dalle_model_params_default(&p);
    p.backend = backend;
    return dalle_model_load(m, "models/tiny", &p, err);
}

Test(cuda_select, cuda_backend_loads_or_fails_cleanly) {
    dalle_error err = {0};
    dalle_model *m = NULL;
    const dalle_status s = load("cuda", &err, &m);
#ifdef DALLE_WITH_CUDA
    if (dalle_cuda_device_count() > 0) {
        cr_assert_eq(s, DALLE_OK, "%s", err.msg);
        dalle_model_info info;
        dalle_model_get_info(m, &info);
        cr_assert_str_eq(info.backend, "cuda");
        dalle_model_free(m);
        return;
    }
    cr_assert_eq(s, DALLE_ERR_BACKEND, "status %d: %s", s, err.msg);
    cr_assert(strstr(err.msg, "no CUDA device") != NULL, "%s", err.msg);
#else
    cr_assert_eq(s, DALLE_ERR_UNSUPPORTED, "status %d: %s", s, err.msg);
    cr_assert(strstr(err.msg, "unknown backend") != NULL, "%s", err.msg);
#endif
    cr_assert(strchr(err.msg, '\n') == NULL, "one line: %s", err.msg);
}

#ifdef DALLE_WITH_CUDA
Test(cuda_select, bad_weight_dtype_is_rejected) {
    setenv("DALLE_CUDA_WEIGHTS", "fp8", 1);
    dalle_error err = {0};
    dalle_model *m = NULL;
    const dalle_status s = load("cuda", &err, &m);
    unsetenv("DALLE_CUDA_WEIGHTS");
    cr_assert_eq(s, DALLE_ERR_INVALID_ARG, "status %d: %s", s, err.msg);
    cr_assert(strstr(err.msg, "DALLE_CUDA_WEIGHTS") != NULL, "%s", err.msg);
}
#endif

Test(cuda_select, unknown_backend_is_unsupported) {
    dalle_error err = {0};
    dalle_model *m = NULL;
    cr_assert_eq(load("tpu", &err, &m), DALLE_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'tpu'") != NULL, "%s", err.msg);
}
