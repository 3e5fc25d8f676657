/* fuzz_safetensors.c — libFuzzer entry point for dalle_safetensors_parse(): any byte string
 * must give either a handle whose tensors lie inside the input (widened to fp32 here, so
 * ASan sees any pointer past it) or an error with a message; never a crash or a leak.
 * Not a test_*.c file, so make does not build it. From the repository root:
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -Iinclude -I. -Icommon tests/fuzz/fuzz_safetensors.c model_loader/safetensors.c \
 *     model_loader/json_util.c common/error.c kernels/tensor.c -ljansson -o build/fuzz_safetensors
 *   mkdir -p build/fuzz_corpus && build/fuzz_safetensors -max_total_time=60 build/fuzz_corpus
 *
 * Seeding build/fuzz_corpus with a few small .safetensors files speeds it up a lot.
 */
#include <stdint.h>
#include <stdlib.h>

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
    } else {
        DALLE_ASSERT(err.msg[0] != '\0' && st.tensors == NULL && st.n_tensors == 0);
    }
    dalle_safetensors_close(&st);
    return 0;
}
