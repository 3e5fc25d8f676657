/* test_gpu_emu.c — the CUDA backend on the emulated device (docs/gpu-emulator.md), in every
 * make test and make asan: the programs $BUILD/emu/gpu_ops and $BUILD/emu/gpu_e2e (built by
 * the Makefile's emulated-device rules from tests/gpu/gpu_ops.c and gpu_e2e.c) must pass —
 * every CUDA op against the CPU op on the --tiny grid with f32, f16 and bf16 weights, every
 * launch run in two thread schedules; models/tiny end to end (gpu_e2e --quick, plain build
 * only: too slow under ASan) — and an injected sticky device
 * fault (DALLE_EMU_FAULT_AT) must end the process through dalle_fault, naming the op and
 * the CUDA error; and the emulator's bug finders each catch their deliberate bug
 * (tests/gpu/emu_selftest.cc). A failing program's output is printed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define OUT_BYTES (64 * 1024) /* the tail of a program's output that is kept */

static char out[OUT_BYTES];

/* runs "ENV $BUILD/emu/PROGRAM ARGS" with stderr joined to stdout; out = the output's tail;
 * returns the exit status, or 128 + the signal */
static int run(const char *env, const char *program, const char *args) {
    const char *build = getenv("BUILD");
    char cmd[1024];
    /* idle OpenMP / OpenBLAS workers of the CPU backend sleep instead of spinning: the
     * emulator runs on one thread and needs the cores */
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 %s %s/emu/%s %s 2>&1",
             env, build && *build ? build : "build", program, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = 0;
    int c;
    while ((c = fgetc(p)) != EOF) {
        if (n == OUT_BYTES - 1) {
            memmove(out, out + OUT_BYTES / 2, OUT_BYTES / 2 - 1);
            n = OUT_BYTES / 2 - 1;
        }
        out[n++] = (char)c;
    }
    out[n] = 0;
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void passes(const char *env, const char *program, const char *args) {
    const int rc = run(env, program, args);
    if (rc != 0)
        fprintf(stderr, "%s %s %s:\n%s\n", env, program, args, out);
    cr_assert_eq(rc, 0, "%s %s exited %d", program, args, rc);
}

Test(gpu_emu, ops_f32) {
    passes("", "gpu_ops", "--tiny --weights f32");
}

Test(gpu_emu, ops_f16) {
    passes("", "gpu_ops", "--tiny --weights f16");
}

Test(gpu_emu, ops_bf16) {
    passes("", "gpu_ops", "--tiny --weights bf16");
}

/* ≈ 1 minute of fibers each: in the plain build only (under ASan it would take ~10) */
#if !defined(__SANITIZE_ADDRESS__)
Test(gpu_emu, e2e_quick_f32_greedy_codes_identical) {
    passes("DALLE_EMU_SCHEDULES=forward", "gpu_e2e", "models/tiny --quick");
}

Test(gpu_emu, e2e_quick_f16_images_within_tolerance) {
    passes("DALLE_EMU_SCHEDULES=forward DALLE_CUDA_WEIGHTS=f16", "gpu_e2e", "models/tiny --quick");
}
#endif

/* the emulator's own bug finders: emu_selftest CASE has one deliberate bug and must end with
 * the report (under ASan an overrun is ASan's report) */
static void finds(const char *what, const char *report) {
    const int rc = run("", "emu_selftest", what);
#if defined(__SANITIZE_ADDRESS__)
    const int asan = strstr(out, "AddressSanitizer") != NULL;
#else
    const int asan = 0;
#endif
    cr_assert_neq(rc, 0, "emu_selftest %s must fail:\n%s", what, out);
    cr_assert(strstr(out, report) != NULL || asan, "emu_selftest %s:\n%s", what, out);
}

Test(gpu_emu, finds_missing_barrier) {
    finds("missing_barrier", "the forward and the reversed schedule wrote different bytes");
}

Test(gpu_emu, finds_exited_barrier) {
    finds("exited_barrier", "is not reached by every thread");
}

Test(gpu_emu, finds_divergent_barrier) {
    finds("divergent_barrier", "__syncthreads in divergent code");
}

Test(gpu_emu, finds_warp_divergence) {
    finds("warp_divergence", "deadlock: thread (0,0,0) waits at the warp operation");
}

Test(gpu_emu, finds_shared_overrun) {
    finds("shared_overrun", "past the end of the dynamic shared memory");
}

Test(gpu_emu, finds_global_overrun) {
    finds("global_overrun", "past the end of a device allocation");
}

Test(gpu_emu, correct_kernel_passes) {
    passes("", "emu_selftest", "correct");
}

Test(gpu_emu, sticky_fault_reaches_dalle_fault) {
    const int rc = run("DALLE_EMU_FAULT_AT=3", "gpu_ops", "--tiny");
    cr_assert_neq(rc, 0, "a faulted device must end the process:\n%s", out);
    cr_assert(strstr(out, "CUDA backend, op ") != NULL, "%s", out);
    cr_assert(strstr(out, "an illegal memory access was encountered") != NULL, "%s", out);
}
