/* normalize.h — dalle-mini's TextNormalizer (docs/model-spec.md §4.1) in C, every deterministic
 * step in the same order, with Python `re.sub` semantics.
 *
 * Contract: input must be valid UTF-8 (else DALLE_ERR_INVALID_ARG). The output is a
 * malloc'd NUL-terminated ASCII string that starts with one space. The random person-token
 * choice of dalle-mini is fixed to "a person" (the most frequent choice). Hashtags are
 * word-split when the normalizer was given a word-frequency file, else the word is kept.
 * A normalizer is read-only after creation and may be shared by threads.
 */
#ifndef DALLE_MODEL_TEXT_NORMALIZE_H
#define DALLE_MODEL_TEXT_NORMALIZE_H

#include <stddef.h>

#include "dalle.h"

typedef struct dalle_normalizer dalle_normalizer;

/* wiki_words_path: enwiki-words-frequency.txt ("word count" per line, most frequent
 * first) or NULL. */
dalle_status dalle_normalizer_new(dalle_normalizer **out, const char *wiki_words_path,
                                  dalle_error *err);
void dalle_normalizer_free(dalle_normalizer *nz);

dalle_status dalle_text_normalize(const dalle_normalizer *nz, const char *text, size_t n,
                                  char **out, dalle_error *err);

#endif /* DALLE_MODEL_TEXT_NORMALIZE_H */
