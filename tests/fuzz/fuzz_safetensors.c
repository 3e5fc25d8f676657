/* fuzz_safetensors.c — libFuzzer entry point for dalle_safetensors_parse(): any byte string
 * must give either a handle whose tensors lie inside the input (widened to fp32 here, so
 * ASan sees any pointer past it) or an error with a message; never a crash or a leak.
 * The tensors are then checked for NaN/Inf (either verdict is fine, the scan must stay
 * inside each tensor). Built and run by make fuzz (the seed corpus is tests/fuzz/corpus/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model_loader/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dalle_safetensors st;
    dalle_error err = {0};
    if (dalle_safetensors_parse(&st, data, size, "fuzz", &err) == DALLE_OK) {
        for (size_t i = 0; i < st.n_tensors; i++) {
            const dalle_st_tensor *t = &st.tensors[i];
            DALLE_ASSERT(t->data >= data && t->data + t->nbytes <= data + size);
            DALLE_ASSERT(dalle_safetensors_find(&st, t->name) == t);
            float *f = malloc((size_t)t->numel * sizeof *f + 1); /* numel ≤ nbytes/2 ≤ size */
            DALLE_ASSERT(f);
            dalle_st_tensor_to_f32(t, f);
            free(f);
        }
        if (dalle_safetensors_check_finite(&st, &err) != DALLE_OK)
            DALLE_ASSERT(strstr(err.msg, "holds NaN or infinity"));
    } else {
        DALLE_ASSERT(err.msg[0] != '\0' && st.tensors == NULL && st.n_tensors == 0);
    }
    dalle_safetensors_close(&st);
    return 0;
}
