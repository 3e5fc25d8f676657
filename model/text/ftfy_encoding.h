/* ftfy_encoding.h — ftfy 6.3.1's fix_encoding (mojibake repair), used by ftfy.c.
 *
 * Contract: t is valid UTF-8; the repaired text (valid UTF-8) is appended to out, or the
 * text unchanged when ftfy's "badness" heuristic sees no mojibake. Allocation failures
 * are recorded in out->oom.
 */
#ifndef DALLE_MODEL_TEXT_FTFY_ENCODING_H
#define DALLE_MODEL_TEXT_FTFY_ENCODING_H

#include <stddef.h>

#include "model/text/textutil.h"

void dalle_ftfy_fix_encoding(dalle_sbuf *out, const char *t, size_t n);

#endif /* DALLE_MODEL_TEXT_FTFY_ENCODING_H */
