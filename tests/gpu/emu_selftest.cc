/* emu_selftest.cc — the emulated device's bug finders, each on a small kernel with one
 * deliberate bug (docs/gpu-emulator.md): `emu_selftest CASE` runs one case; a buggy case
 * must end the process with the emulator's report (tests/gpu/test_gpu_emu.c checks the
 * exit and the message), the case "correct" must pass. Built with the emulator's flags,
 * linked with its runtime only.
 *   missing_barrier   a shared-memory exchange without __syncthreads: the two schedules differ
 *   exited_barrier    half the block returns before a barrier
 *   divergent_barrier two halves wait at different barriers
 *   warp_divergence   half a warp skips a shuffle the full mask names
 *   shared_overrun    dynamic shared memory written one element past its end
 *   global_overrun    a device array written one element past its end
 *   correct           a block reduction (shuffles, barriers, shared memory): the right sum
 */
#include <stdio.h>
#include <string.h>

#include "cuda_runtime.h"

#define N_THREADS 64 /* [N_THREADS] values, one block */

__global__ void missing_barrier(float *y) {
    __shared__ float sh[N_THREADS];
    sh[threadIdx.x] = (float)threadIdx.x;
    y[threadIdx.x] = sh[(threadIdx.x + 32) % N_THREADS]; /* another warp's slot, unsynchronised */
}

__global__ void exited_barrier(float *y) {
    if (threadIdx.x >= 32)
        return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}

__global__ void divergent_barrier(float *y) {
    if (threadIdx.x < 32)
        __syncthreads();
    else
        __syncthreads();
    y[threadIdx.x] = 1.0f;
}

__global__ void warp_divergence(float *y) {
    float v = (float)threadIdx.x;
    if ((threadIdx.x & 31) < 16)
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

__global__ void shared_overrun(float *y) {
    float *sh = (float *)dalle_emu::dyn_smem(); /* N_THREADS floats */
    sh[threadIdx.x + 1] = 1.0f;
    y[threadIdx.x] = 0.0f;
}

__global__ void global_overrun(float *y) {
    y[threadIdx.x + 1] = 1.0f;
}

__global__ void correct(float *y) {
    __shared__ float part[N_THREADS / 32];
    float v = (float)threadIdx.x;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x / 32] = v;
    __syncthreads();
    y[threadIdx.x] = part[0] + part[1];
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*fn)(float *);
    } cases[] = {{"missing_barrier", missing_barrier},
                 {"exited_barrier", exited_barrier},
                 {"divergent_barrier", divergent_barrier},
                 {"warp_divergence", warp_divergence},
                 {"shared_overrun", shared_overrun},
                 {"global_overrun", global_overrun},
                 {"correct", correct}};
    for (const auto &c : cases) {
        if (argc != 2 || strcmp(argv[1], c.name))
            continue;
        float *y, h[N_THREADS];
        if (cudaMalloc(&y, sizeof h) != cudaSuccess)
            return 2;
        dalle_emu::launch(c.name, c.fn, 1, N_THREADS, N_THREADS * sizeof(float), 0)(y);
        if (cudaGetLastError() != cudaSuccess ||
            cudaMemcpy(h, y, sizeof h, cudaMemcpyDeviceToHost) != cudaSuccess)
            return 2;
        cudaFree(y);
        const float want = N_THREADS * (N_THREADS - 1) / 2;
        for (int i = 0; i < N_THREADS; i++)
            if (h[i] != want) {
                printf("%s: y[%d] = %g, want %g\n", c.name, i, h[i], want);
                return 1;
            }
        printf("%s: passed\n", c.name);
        return 0;
    }
    fprintf(stderr, "usage: emu_selftest CASE (see the file's header)\n");
    return 2;
}
