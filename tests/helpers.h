/* helpers.h — small shared helpers for the C tests: golden tensors read through our own
 * safetensors reader, and the error metric every parity test uses:
 *   max relative error = max_i |ours_i − ref_i| / max_i |ref_i|.
 */
#ifndef DALLE_TESTS_HELPERS_H
#define DALLE_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "model_loader/safetensors.h"

/* The golden tensor `name` as a malloc'd fp32 array; *numel receives its size. */
static inline float *golden_tensor(const dalle_safetensors *st, const char *name, int64_t *numel) {
    const dalle_st_tensor *t = dalle_safetensors_find(st, name);
    cr_assert_not_null(t, "golden tensor '%s' missing from %s", name, st->label);
    float *v = malloc((size_t)t->numel * sizeof *v);
    cr_assert_not_null(v);
    dalle_st_tensor_to_f32(t, v);
    if (numel) *numel = t->numel;
    return v;
}

static inline double max_rel_err(const float *ours, const float *ref, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= diff)) diff = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

#endif /* DALLE_TESTS_HELPERS_H */
