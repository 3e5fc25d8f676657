/* clip_tokenizer.h — CLIP's BPE tokenizer (docs/model-spec.md §6.3), as open_clip's
 * SimpleTokenizer: ftfy, HTML-unescape twice, whitespace collapse, lower case, the CLIP
 * regex, byte→unicode, </w> on the last symbol, merges by rank; vocabulary built from the
 * merges file as OpenAI's code does (256 bytes, 256 bytes + </w>, merges, SOT, EOT).
 *
 * Contract: read-only after loading; shareable across threads.
 */
#ifndef DALLE_MODEL_TEXT_CLIP_TOKENIZER_H
#define DALLE_MODEL_TEXT_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

#define DALLE_CLIP_CONTEXT 77

typedef struct dalle_clip_tokenizer dalle_clip_tokenizer;

/* merges_path: the CLIP merges file (a header line, then "a b" per line); n_merges: how
 * many merge lines to use (48894 for the released CLIP models); ≤ 0 = all lines. */
dalle_status dalle_clip_tokenizer_load(dalle_clip_tokenizer **out, const char *merges_path,
                                       int n_merges, dalle_error *err);
void dalle_clip_tokenizer_free(dalle_clip_tokenizer *tok);

int dalle_clip_tokenizer_vocab_size(const dalle_clip_tokenizer *tok);
int32_t dalle_clip_tokenizer_sot(const dalle_clip_tokenizer *tok);
int32_t dalle_clip_tokenizer_eot(const dalle_clip_tokenizer *tok);

/* ids[ctx]: SOT content… EOT then 0-padding; content cut to ctx − 2 tokens (the last one
 * is always EOT). *n_real = tokens before padding. */
dalle_status dalle_clip_tokenize(const dalle_clip_tokenizer *tok, const char *text, size_t n,
                                 int ctx, int32_t *ids, int *n_real, dalle_error *err);

#endif /* DALLE_MODEL_TEXT_CLIP_TOKENIZER_H */
