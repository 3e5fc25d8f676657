/* tensor.c — dtype names and sizes, tensor element counts (see ops.h). */
#include "kernels/ops.h"

size_t dalle_dtype_size(dalle_dtype t) {
    switch (t) {
    case DALLE_F32: return 4;
    case DALLE_F16: return 2;
    case DALLE_BF16: return 2;
    }
    return 0;
}

const char *dalle_dtype_name(dalle_dtype t) {
    switch (t) {
    case DALLE_F32: return "F32";
    case DALLE_F16: return "F16";
    case DALLE_BF16: return "BF16";
    }
    return "?";
}

int64_t dalle_tensor_numel(const dalle_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}
