/* pretokenize.h — the two regex pre-tokenizers, written by hand over code points, and the
 * UTF-8 decoding they start from.
 *
 * Character classes come from libutf8proc: letter = L*, number = N*, space = onig's and the
 * Python regex module's \s (U+0009–U+000D, U+0085, Zs, Zl, Zp); everything else is "other".
 * Both peers use a newer Unicode than libutf8proc 2.8 (15.0): HF tokenizers' onig has
 * Unicode 16, the regex module used by open_clip Unicode 17. Letters and digits first
 * assigned there (Garay, Tulu-Tigalari, CJK extension J, …) are "other" here.
 *
 * Contract: pure functions of their arguments.
 */
#ifndef DALLE_MODEL_TEXT_PRETOKENIZE_H
#define DALLE_MODEL_TEXT_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

/* Decodes UTF-8 text[0..n) into cp[] (room for n code points suffices) and, when off is not
 * NULL, off[k] = byte offset of cp[k] with off[count] = n. Returns the count, or −1 for
 * invalid UTF-8 (overlong forms, surrogates, > U+10FFFF, truncated sequences). */
int dalle_utf8_decode(const char *text, size_t n, uint32_t *cp, uint32_t *off);

/* Writes the UTF-8 of cp[0..n) to out (room for 4·n bytes) and, when off is not NULL, the
 * offsets as dalle_utf8_decode does; returns the byte count. */
size_t dalle_utf8_encode(const uint32_t *cp, int n, char *out, uint32_t *off);

/* GPT-2 / HF ByteLevel pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * on cp[0..n) (n is the end of the subject, for the look-ahead): the end of the match that
 * starts at i < n. The pattern matches at every position, so pieces tile the text. */
int dalle_pretok_gpt2_match(const uint32_t *cp, int n, int i);

/* open_clip's pattern, case-insensitive (regex module):
 *   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * The next match at or after *start in cp[0..n): sets *start to where it begins and
 * *special to 0 for <start_of_text>, 1 for <end_of_text>, −1 otherwise; returns its end,
 * or −1 when nothing matches any more. Spaces are skipped, and so is U+0345, which the
 * case-insensitive classes leave out (it case-folds to a letter). */
int dalle_pretok_clip_next(const uint32_t *cp, int n, int *start, int *special);

#endif /* DALLE_MODEL_TEXT_PRETOKENIZE_H */
