/* gpu_e2e.c — a model end to end on the CPU and CUDA backends through the public API
 * (dalle.h), same prompts and seeds:
 *   1. greedy codes (top_k = 1): must be identical with fp32 weights;
 *   2. seeded sampling (top_k = 50, config temperature / cond_scale): codes compared, the
 *      match rate reported — with fp32 weights any difference comes from GEMM summation
 *      order moving a logit by ~1e-6 near a sampling boundary, and once one code differs
 *      the rest of that image legitimately diverges; fails below 90 % in fp32;
 *   3. VQGAN pixels of the greedy codes: max |diff| ≤ 2 and ≥ 99 % identical bytes (fp32;
 *      uint8 truncation flips values sitting on a boundary); 16-bit weights: mean |diff| ≤ 4;
 *   4. CLIP scores of the CPU's images on both backends: max |diff| / max |score| ≤ 1e-4
 *      (fp32), 2e-2 (16-bit);
 *   5. dalle_generate's ranking on the device backend (CLIP preprocessing by clip_prep from
 *      the decoded bytes left in backend memory) against dalle_rank_images of the same
 *      pixels uploaded from the host, same backend: max |diff| / max |score| ≤ 1e-5;
 *   6. the job API (dalle_job_start, dalle_state_step, dalle_job_codes) against the batch
 *      API on the device backend, the last generation of check 1 or 2 again: identical codes,
 *      no device→host copy and no sync in any decode step (dalle_state_device_counts), one
 *      copy to read the codes; then dalle_job_finish, whose copies and syncs are printed.
 * With 16-bit weights the codes are reported, not required to match.
 *
 * The decode step runs recorded in CUDA graphs unless DALLE_CUDA_GRAPHS=0; its KV cache is
 * in the weight dtype unless DALLE_CUDA_KV=f32|f16|bf16 (a 16-bit cache = 16-bit mode).
 *   gpu_e2e [MODEL_DIR [BACKEND]] [--quick]   (default models/tiny and cuda;
 *   DALLE_CUDA_WEIGHTS=f16|bf16 for 16-bit weights; BACKEND cpu is a dry run of this program
 *   without a GPU; --quick: one prompt, two images, checks 1, 3, 4 and 6 only — for the
 *   emulated device, where every GPU thread is a fiber)
 * Exit 0 pass, 1 fail, 2 no CUDA device ("skipped: no CUDA device").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalle.h"

static const char *prompts[] = {
    "a red bicycle leaning against a brick wall",
    "a bowl of ramen, oil painting",
};
#define MAX_IMAGES 4
static int n_prompts = 2, n_images = MAX_IMAGES; /* --quick: 1 prompt, 2 images */
static int quick;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

typedef struct {
    dalle_model *m;
    dalle_state *s;
    dalle_model_info info;
} side;

static int open_side(side *sd, const char *dir, const char *backend, dalle_error *err) {
    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.backend = backend;
    if (dalle_model_load(&sd->m, dir, &mp, err) != DALLE_OK)
        return 0;
    dalle_model_get_info(sd->m, &sd->info);
    dalle_state_params sp = {.max_images = MAX_IMAGES, .max_prompts = 1};
    if (dalle_state_new(&sd->s, sd->m, &sp, err) != DALLE_OK)
        return 0;
    return 1;
}

static int fails;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        int ok_ = (cond);                                                                          \
        printf("%-4s ", ok_ ? "ok" : "FAIL");                                                      \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!ok_)                                                                                  \
            fails++;                                                                               \
    } while (0)

int main(int argc, char **argv) {
    const char *pos[2] = {"models/tiny", "cuda"}; /* MODEL_DIR, BACKEND */
    for (int i = 1, k = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1, n_prompts = 1, n_images = 2;
        else if (k < 2)
            pos[k++] = argv[i];
    }
    const char *dir = pos[0], *backend = pos[1];
    const char *wenv = getenv("DALLE_CUDA_WEIGHTS");
    const char *kenv = getenv("DALLE_CUDA_KV"); /* a 16-bit KV cache counts as 16-bit mode */
    const int f32 =
        (!wenv || !*wenv || !strcmp(wenv, "f32")) && (!kenv || !*kenv || !strcmp(kenv, "f32"));
    dalle_error err = {0};
    side cpu = {0}, gpu = {0};
    if (!open_side(&gpu, dir, backend, &err)) {
        if (err.status == DALLE_ERR_BACKEND && strstr(err.msg, "no CUDA device")) {
            printf("gpu_e2e: skipped: no CUDA device (%s)\n", err.msg);
            return 2;
        }
        printf("gpu_e2e: FAIL loading %s on %s: %s\n", dir, backend, err.msg);
        return 1;
    }
    if (!open_side(&cpu, dir, "cpu", &err)) {
        printf("gpu_e2e: FAIL loading %s on cpu: %s\n", dir, err.msg);
        return 1;
    }
    const int L = cpu.info.image_length;
    printf("gpu_e2e: %s (%s), weights %s, %d prompts × %d images, %d codes each\n", dir,
           cpu.info.name ? cpu.info.name : "?", f32 ? "f32" : wenv, n_prompts, n_images, L);
    int32_t *cc = malloc((size_t)n_images * L * 4), *gc = malloc((size_t)n_images * L * 4);
    long greedy_same = 0, greedy_total = 0, samp_same = 0, samp_total = 0;
    double t_cpu = 0, t_gpu = 0;
    const int R = cpu.info.image_size;
    const size_t img_bytes = (size_t)R * R * 3;
    uint8_t *crgb = cpu.info.has_vqgan ? malloc(n_images * img_bytes) : NULL;
    uint8_t *grgb = cpu.info.has_vqgan ? malloc(n_images * img_bytes) : NULL;
    long px_same = 0, px_total = 0;
    int px_max = 0;
    double px_sum = 0, score_diff = 0, score_max = 0;
    dalle_gen_params last_p = {0}; /* the last generation, for the job API check */
    const char *last_prompt = prompts[0];
    for (int pi = 0; pi < n_prompts; pi++) {
        const char *pr = prompts[pi];
        for (int mode = 0; mode < (quick ? 1 : 2); mode++) { /* greedy, then seeded top-k */
            dalle_gen_params p;
            dalle_gen_params_default(cpu.m, &p);
            p.n_images = n_images;
            p.seed = 1000 + pi;
            if (mode == 0)
                p.top_k = 1;
            else
                p.top_k = 50 < cpu.info.image_vocab_size ? 50 : cpu.info.image_vocab_size;
            last_p = p, last_prompt = pr;
            double t0 = now_ms();
            if (dalle_generate_codes(cpu.s, pr, strlen(pr), &p, cc, NULL, &err) != DALLE_OK) {
                printf("FAIL cpu generate: %s\n", err.msg);
                return 1;
            }
            double t1 = now_ms();
            if (dalle_generate_codes(gpu.s, pr, strlen(pr), &p, gc, NULL, &err) != DALLE_OK) {
                printf("FAIL cuda generate: %s\n", err.msg);
                return 1;
            }
            double t2 = now_ms();
            t_cpu += t1 - t0;
            t_gpu += t2 - t1;
            long same = 0;
            for (int i = 0; i < n_images * L; i++)
                same += cc[i] == gc[i];
            if (mode == 0)
                greedy_same += same, greedy_total += n_images * L;
            else
                samp_same += same, samp_total += n_images * L;
            if (mode != 0 || !crgb)
                continue;
            /* images and CLIP scores of the greedy codes (the CPU's codes on both sides) */
            if (dalle_decode_codes(cpu.s, cc, n_images, crgb, &err) != DALLE_OK ||
                dalle_decode_codes(gpu.s, cc, n_images, grgb, &err) != DALLE_OK) {
                printf("FAIL decode: %s\n", err.msg);
                return 1;
            }
            for (size_t i = 0; i < n_images * img_bytes; i++) {
                const int d = abs((int)crgb[i] - (int)grgb[i]);
                px_same += d == 0;
                px_sum += d;
                if (d > px_max)
                    px_max = d;
            }
            px_total += (long)(n_images * img_bytes);
            if (cpu.info.has_clip) {
                dalle_text t;
                if (dalle_text_encode(cpu.m, pr, strlen(pr), &t, &err) != DALLE_OK)
                    return 1;
                const uint8_t *ci[MAX_IMAGES], *gi[MAX_IMAGES];
                int w[MAX_IMAGES], h[MAX_IMAGES];
                float cs[MAX_IMAGES], gs[MAX_IMAGES];
                int32_t co[MAX_IMAGES], go[MAX_IMAGES];
                for (int i = 0; i < n_images; i++)
                    ci[i] = crgb + i * img_bytes, gi[i] = ci[i] /* the same pixels: CLIP alone */,
                    w[i] = h[i] = R;
                if (dalle_rank_images(cpu.s, t.clip_ids, ci, w, h, n_images, cs, co, &err) !=
                        DALLE_OK ||
                    dalle_rank_images(gpu.s, t.clip_ids, gi, w, h, n_images, gs, go, &err) !=
                        DALLE_OK) {
                    printf("FAIL rank: %s\n", err.msg);
                    return 1;
                }
                for (int i = 0; i < n_images; i++) {
                    const double d = fabs((double)cs[i] - gs[i]);
                    if (!(d <= score_diff))
                        score_diff = d;
                    if (fabs((double)cs[i]) > score_max)
                        score_max = fabs((double)cs[i]);
                }
                dalle_text_free(&t);
            }
        }
    }
    CHECK(greedy_same == greedy_total || !f32, "greedy codes (top_k=1)   %ld/%ld identical",
          greedy_same, greedy_total);
    const double rate = samp_total ? (double)samp_same / samp_total : 1;
    if (!quick)
        CHECK(rate >= 0.9 || !f32, "seeded top_k=50 codes    %ld/%ld identical (%.2f %%)",
              samp_same, samp_total, 100 * rate);
    if (crgb) {
        const double same = px_total ? (double)px_same / px_total : 1, mean = px_sum / px_total;
        CHECK(f32 ? (px_max <= 2 && same >= 0.99) : mean <= 4,
              "VQGAN pixels             %.4f %% identical, max |diff| %d, mean %.4f", 100 * same,
              px_max, mean);
    }
    if (gpu.info.has_clip && grgb && !quick) {
        dalle_gen_params p;
        dalle_gen_params_default(gpu.m, &p);
        p.n_images = n_images;
        p.seed = 7;
        dalle_result r;
        dalle_text t;
        float gs[MAX_IMAGES];
        int32_t go[MAX_IMAGES];
        const uint8_t *gi[MAX_IMAGES];
        int w[MAX_IMAGES];
        for (int i = 0; i < n_images; i++)
            gi[i] = grgb + i * img_bytes, w[i] = R;
        if (dalle_generate(gpu.s, prompts[0], strlen(prompts[0]), &p, NULL, &r, &err) != DALLE_OK ||
            dalle_decode_codes(gpu.s, r.codes, n_images, grgb, &err) != DALLE_OK ||
            dalle_text_encode(gpu.m, prompts[0], strlen(prompts[0]), &t, &err) != DALLE_OK ||
            dalle_rank_images(gpu.s, t.clip_ids, gi, w, w, n_images, gs, go, &err) != DALLE_OK) {
            printf("FAIL generate + rank: %s\n", err.msg);
            return 1;
        }
        double d = 0, mx = 0;
        for (int k = 0; k < n_images; k++) {
            const double e = fabs((double)r.images[k].score - gs[r.images[k].index]);
            if (!(e <= d))
                d = e;
            if (fabs((double)gs[k]) > mx)
                mx = fabs((double)gs[k]);
        }
        const double rel = mx > 0 ? d / mx : d;
        CHECK(rel <= 1e-5, "ranking in generate      vs rank_images, max |diff| / max |score| %.3e",
              rel);
        dalle_text_free(&t);
        dalle_result_free(&r);
    }
    { /* the job API on the device backend: the last generation again, step by step */
        dalle_text t;
        int job = -1;
        if (dalle_text_encode(gpu.m, last_prompt, strlen(last_prompt), &t, &err) != DALLE_OK ||
            dalle_job_start(gpu.s, &t, &last_p, &job, &err) != DALLE_OK || job < 0) {
            printf("FAIL job API: %s\n", err.msg);
            return 1;
        }
        long c0, s0, c1, s1, step_copies = 0, step_syncs = 0;
        while (dalle_job_progress(gpu.s, job) < L) {
            dalle_state_device_counts(gpu.s, &c0, &s0);
            dalle_state_step(gpu.s);
            dalle_state_device_counts(gpu.s, &c1, &s1);
            step_copies += c1 - c0, step_syncs += s1 - s0;
        }
        CHECK(step_copies == 0 && step_syncs == 0,
              "job API decode steps     %ld device→host copies, %ld syncs in %d steps", step_copies,
              step_syncs, L);
        dalle_state_device_counts(gpu.s, &c0, &s0);
        dalle_job_codes(gpu.s, job, cc);
        dalle_state_device_counts(gpu.s, &c1, &s1);
        long same = 0;
        for (int i = 0; i < n_images * L; i++)
            same += cc[i] == gc[i];
        CHECK(same == (long)n_images * L && c1 - c0 == 1,
              "job API vs batch API     %ld/%d codes identical, read in %ld copy", same,
              n_images * L, c1 - c0);
        if (gpu.info.has_vqgan && grgb) {
            int32_t order[MAX_IMAGES];
            float scores[MAX_IMAGES];
            const dalle_job_output out = {NULL, grgb, order, scores};
            const int ranked = gpu.info.has_clip;
            if (dalle_job_finish(gpu.s, job, ranked ? t.clip_ids : NULL, &out, NULL, &err) !=
                DALLE_OK) {
                printf("FAIL job finish: %s\n", err.msg);
                return 1;
            }
            dalle_state_device_counts(gpu.s, &c0, &s0);
            printf("info job finish: %ld device→host copies, %ld syncs (%s)\n", c0 - c1, s0 - s1,
                   ranked ? "VQGAN + CLIP" : "VQGAN");
        }
        dalle_job_release(gpu.s, job);
        dalle_text_free(&t);
    }
    if (cpu.info.has_clip && crgb) {
        const double rel = score_max > 0 ? score_diff / score_max : score_diff;
        CHECK(rel <= (f32 ? 1e-4 : 2e-2), "CLIP scores              max |diff| / max |score| %.3e",
              rel);
    }
    printf("time: generate codes cpu %.1f ms, cuda %.1f ms (%d calls, first cuda call includes "
           "warm-up)\n",
           t_cpu, t_gpu, 2 * n_prompts);
    dalle_state_free(cpu.s), dalle_state_free(gpu.s);
    dalle_model_free(cpu.m), dalle_model_free(gpu.m);
    free(cc), free(gc), free(crgb), free(grgb);
    printf("gpu_e2e: %s\n", fails ? "FAILED" : "passed");
    return fails ? 1 : 0;
}
