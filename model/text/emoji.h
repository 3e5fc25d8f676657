/* emoji.h — emoji 2.16.0's demojize() with its defaults (":" delimiters, English names,
 * zero-width joiners of non-RGI sequences kept): each emoji sequence, including ZWJ
 * sequences, flags, keycaps and skin tones, becomes ":name:"; U+FE0E/U+FE0F that are not
 * part of an emoji are dropped, as in the Python tokenizer.
 *
 * Data: model/text/data/emoji.kv (tools/text/gen_tables.py).
 * Contract: input valid UTF-8; output malloc'd, NUL-terminated, *out_len bytes; NULL on
 * allocation failure.
 */
#ifndef DALLE_MODEL_TEXT_EMOJI_H
#define DALLE_MODEL_TEXT_EMOJI_H

#include <stddef.h>

char *dalle_emoji_demojize(const char *text, size_t n, size_t *out_len);

#endif /* DALLE_MODEL_TEXT_EMOJI_H */
