/* fuzz_request.c — libFuzzer target for the POST body validator (server/request.c): the
 * first byte picks the route (odd: /v1/images/generations, else /generate), the rest is the
 * body. Any input gives either a request within the limits (prompt present, not longer than
 * --max-prompt, n in [1, --max-batch]) or an error with a status, a code and a message that
 * renders as a JSON body; never a crash, a leak or undefined behaviour. The model is
 * models/tiny (run from the repository root; make fuzz does). Built and run by make fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "server/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dalle_server srv;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dalle_model_params mp;
    dalle_model_params_default(&mp);
    mp.threads = 1;
    dalle_error err = {0};
    DALLE_ASSERT(dalle_model_load(&srv.model, "models/tiny", &mp, &err) == DALLE_OK);
    dalle_model_get_info(srv.model, &srv.info);
    srv.cfg.max_prompt = 1024;
    srv.cfg.max_batch = 4;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    const int openai = data[0] & 1;
    dalle_request req;
    dalle_http_error e;
    if (dalle_request_parse(&srv, openai, (const char *)data + 1, size - 1, &req, &e) == 0) {
        DALLE_ASSERT(req.prompt && req.prompt_len > 0 && req.prompt_len <= 1024);
        DALLE_ASSERT(strlen(req.prompt) == req.prompt_len); /* no NUL inside */
        DALLE_ASSERT(req.gen.n_images >= 1 && req.gen.n_images <= 4);
        dalle_request_free(&req);
        DALLE_ASSERT(req.prompt == NULL);
    } else {
        DALLE_ASSERT(e.status >= 400 && e.status < 600 && e.code && e.message[0]);
        DALLE_ASSERT(!openai || e.status != 422);
        size_t len = 0;
        char *body = dalle_error_body(&e, &len);
        DALLE_ASSERT(body && len == strlen(body));
        free(body);
    }
    return 0;
}
