/* fuzz_model_config.c — libFuzzer target for dalle_model_config_parse() (config.json): any
 * bytes give either a complete config whose sizes satisfy the documented relations, or
 * DALLE_ERR_FORMAT with a one-line message and a zeroed config; never a crash or a leak.
 * Built and run by make fuzz.
 */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "model_loader/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dalle_model_config cfg;
    dalle_error err = {0};
    if (dalle_model_config_parse(&cfg, (const char *)data, size, "fuzz", &err) == DALLE_OK) {
        DALLE_ASSERT(cfg.bart.d_model % cfg.bart.heads == 0);
        DALLE_ASSERT(cfg.bart.start_token < cfg.bart.lm_head_size);
        DALLE_ASSERT(cfg.encoder_file[0] && !strchr(cfg.encoder_file, '/'));
        DALLE_ASSERT(strlen(cfg.description) < DALLE_DESCRIPTION_MAX);
        DALLE_ASSERT(cfg.n_examples >= 0 && cfg.n_examples <= DALLE_MODEL_MAX_EXAMPLES);
        for (int i = 0; i < cfg.n_examples; i++)
            DALLE_ASSERT(cfg.examples[i][0] && !strchr(cfg.examples[i], '\n'));
    } else {
        DALLE_ASSERT(err.msg[0] && !strchr(err.msg, '\n') && cfg.vqgan_json == NULL);
    }
    dalle_model_config_free(&cfg);
    return 0;
}
