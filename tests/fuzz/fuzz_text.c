/* fuzz_text.c — libFuzzer target for the text front end: dalle-mini's normaliser, then the
 * BART byte-level BPE, and the CLIP BPE on the raw input, with models/tiny's vocabulary and
 * merges (run from the repository root; make fuzz does). Any bytes give either tokens (ids
 * inside the vocabulary, <s>/SOT first, the mask and lengths consistent) or
 * DALLE_ERR_INVALID_ARG for invalid UTF-8; never a crash, a leak or undefined behaviour.
 * Built and run by make fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/text/bart_tokenizer.h"
#include "model/text/clip_tokenizer.h"
#include "model/text/normalize.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_LEN 64

static dalle_normalizer *nz;
static dalle_bart_tokenizer *bart;
static dalle_clip_tokenizer *clip;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dalle_error err = {0};
    DALLE_ASSERT(dalle_normalizer_new(&nz, "models/tiny/enwiki-words-frequency.txt", &err) ==
                 DALLE_OK);
    DALLE_ASSERT(dalle_bart_tokenizer_load(&bart, "models/tiny/vocab.json",
                                           "models/tiny/merges.txt", &err) == DALLE_OK);
    DALLE_ASSERT(dalle_clip_tokenizer_load(&clip, "models/tiny/clip_merges.txt", 0, &err) ==
                 DALLE_OK);
    return 0;
}

static void check_bart(const char *text, size_t n) {
    int32_t ids[TEXT_LEN];
    uint8_t mask[TEXT_LEN];
    int n_real = 0;
    dalle_error err = {0};
    if (dalle_bart_tokenize(bart, text, n, TEXT_LEN, ids, mask, &n_real, &err) != DALLE_OK) {
        DALLE_ASSERT(err.status == DALLE_ERR_INVALID_ARG);
        return;
    }
    DALLE_ASSERT(n_real >= 2 && n_real <= TEXT_LEN);
    for (int i = 0; i < TEXT_LEN; i++) {
        DALLE_ASSERT(ids[i] >= 0 && ids[i] < dalle_bart_tokenizer_vocab_size(bart));
        DALLE_ASSERT(mask[i] == (i < n_real));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char *norm = NULL;
    dalle_error err = {0};
    if (dalle_text_normalize(nz, text, size, &norm, &err) == DALLE_OK) {
        DALLE_ASSERT(norm[0] == ' ');
        check_bart(norm, strlen(norm));
        free(norm);
    } else {
        DALLE_ASSERT(err.status == DALLE_ERR_INVALID_ARG && norm == NULL);
    }
    check_bart(text, size);
    int32_t ids[DALLE_CLIP_CONTEXT];
    int n_real = 0;
    if (dalle_clip_tokenize(clip, text, size, DALLE_CLIP_CONTEXT, ids, &n_real, &err) == DALLE_OK) {
        DALLE_ASSERT(n_real >= 2 && n_real <= DALLE_CLIP_CONTEXT);
        DALLE_ASSERT(ids[0] == dalle_clip_tokenizer_sot(clip));
        DALLE_ASSERT(ids[n_real - 1] == dalle_clip_tokenizer_eot(clip));
        for (int i = 0; i < DALLE_CLIP_CONTEXT; i++)
            DALLE_ASSERT(ids[i] >= 0 && ids[i] < dalle_clip_tokenizer_vocab_size(clip));
    } else {
        DALLE_ASSERT(err.status == DALLE_ERR_INVALID_ARG);
    }
    return 0;
}
