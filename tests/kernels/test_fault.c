/* test_fault.c — the device-fault path (kernels/fault.h) and device selection by ordinal:
 * DALLE_FAULT_INJECT=step:N makes a backend report a fault from inside its N-th decode step
 * and the handler set with dalle_set_fault_handler receives it (the process then ends the
 * way the handler chooses: exit 7 here); without a handler the process aborts; a bad
 * DALLE_FAULT_INJECT fails the model load; dalle_backend_device_count and the cpu backend's
 * single device.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

#define MODEL_DIR "models/tiny"

static int faults_seen;

static void exit_7(const char *msg, void *user) {
    cr_assert_eq(user, &faults_seen);
    cr_assert(strstr(msg, "injected fault at decode step 3") != NULL, "%s", msg);
    exit(7);
}

/* Load the tiny model and decode with DALLE_FAULT_INJECT=spec: never returns when it faults. */
static void decode_with(const char *spec, int steps) {
    setenv("DALLE_FAULT_INJECT", spec, 1);
    dalle_error err = {0};
    dalle_model *m = NULL;
    dalle_state *s = NULL;
    cr_assert_eq(dalle_model_load(&m, MODEL_DIR, NULL, &err), DALLE_OK, "%s", err.msg);
    cr_assert_eq(dalle_state_new(&s, m, &(dalle_state_params){1, 1}, &err), DALLE_OK, "%s",
                 err.msg);
    dalle_text text;
    cr_assert_eq(dalle_text_encode(m, "a fault", 7, &text, &err), DALLE_OK, "%s", err.msg);
    dalle_gen_params p;
    dalle_gen_params_default(m, &p);
    int job = -1;
    cr_assert_eq(dalle_job_start(s, &text, &p, &job, &err), DALLE_OK, "%s", err.msg);
    for (int i = 0; i < steps; i++)
        dalle_state_step(s);
    cr_assert_eq(dalle_job_progress(s, job), steps);
    dalle_job_release(s, job);
    dalle_text_free(&text);
    dalle_state_free(s);
    dalle_model_free(m);
    unsetenv("DALLE_FAULT_INJECT");
}

Test(fault, injected_fault_reaches_the_handler, .exit_code = 7, .timeout = 120) {
    dalle_set_fault_handler(exit_7, &faults_seen);
    decode_with("step:3", 10);
    cr_assert_fail("the injected fault did not stop the decode");
}

Test(fault, without_a_handler_it_aborts, .signal = SIGABRT, .timeout = 120) {
    decode_with("step:3", 10);
}

Test(fault, not_reached_is_harmless, .timeout = 120) {
    dalle_set_fault_handler(exit_7, &faults_seen);
    decode_with("step:11", 10); /* ten steps run, the eleventh would fault */
}

Test(fault, bad_spec_fails_the_load) {
    const char *bad[] = {"step:0", "step:", "step:x", "step:3x", "steps:3", "3", "step:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("DALLE_FAULT_INJECT", bad[i], 1);
        dalle_error err = {0};
        dalle_model *m = NULL;
        cr_assert_eq(dalle_model_load(&m, MODEL_DIR, NULL, &err), DALLE_ERR_INVALID_ARG, "%s",
                     bad[i]);
        cr_assert(strstr(err.msg, "DALLE_FAULT_INJECT must be step:N") != NULL, "%s", err.msg);
        cr_assert_null(m);
    }
    unsetenv("DALLE_FAULT_INJECT");
}

Test(device, counts_and_cpu_ordinal) {
    cr_assert_eq(dalle_backend_device_count("cpu"), 1);
    cr_assert_eq(dalle_backend_device_count("tpu"), 0);
    cr_assert_geq(dalle_backend_device_count("cuda"), 0);
    dalle_model_params p;
    dalle_model_params_default(&p);
    cr_assert_eq(p.device, 0);
    p.device = 1;
    dalle_error err = {0};
    dalle_model *m = NULL;
    cr_assert_eq(dalle_model_load(&m, MODEL_DIR, &p, &err), DALLE_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "cpu backend has device 0 only") != NULL, "%s", err.msg);
}
