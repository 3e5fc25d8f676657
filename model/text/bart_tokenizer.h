/* bart_tokenizer.h — byte-level BPE as BartTokenizerFast (HF tokenizers) with a model's
 * vocab.json + merges.txt: GPT-2 byte→unicode map, GPT-2 pre-tokenizer pattern, merges by
 * rank, no prefix space, <s> … </s>, truncation to max_len that keeps </s>, padding with
 * <pad> and an attention mask.
 *
 * Contract: a tokenizer is read-only after loading and may be shared by threads. Input is
 * UTF-8 (invalid → DALLE_ERR_INVALID_ARG).
 */
#ifndef DALLE_MODEL_TEXT_BART_TOKENIZER_H
#define DALLE_MODEL_TEXT_BART_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

typedef struct dalle_bart_tokenizer dalle_bart_tokenizer;

dalle_status dalle_bart_tokenizer_load(dalle_bart_tokenizer **out, const char *vocab_path,
                                       const char *merges_path, dalle_error *err);
void dalle_bart_tokenizer_free(dalle_bart_tokenizer *tok);

/* Number of entries in vocab.json. */
int dalle_bart_tokenizer_vocab_size(const dalle_bart_tokenizer *tok);

/* ids[max_len], mask[max_len]: <s> content… </s> then <pad>; *n_real = tokens before
 * padding. Content is cut to max_len − 2 tokens. */
dalle_status dalle_bart_tokenize(const dalle_bart_tokenizer *tok, const char *text, size_t n,
                                 int max_len, int32_t *ids, uint8_t *mask, int *n_real,
                                 dalle_error *err);

#endif /* DALLE_MODEL_TEXT_BART_TOKENIZER_H */
