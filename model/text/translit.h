/* translit.h — Unidecode 1.4.0's unidecode() (errors="ignore"): every code point becomes
 * a fixed ASCII string, with no context. ASCII stays as it is; code points that unidecode
 * has no data for (and everything above U+EFFFF) disappear.
 *
 * Data: model/text/data/translit.bin (tools/text/gen_tables.py) holds the code points whose
 * answer is not "compatibility decomposition with the marks stripped, when that is ASCII";
 * utf8proc computes the rest.
 */
#ifndef DALLE_MODEL_TEXT_TRANSLIT_H
#define DALLE_MODEL_TEXT_TRANSLIT_H

#include <stddef.h>
#include <stdint.h>

#include "model/text/textutil.h"

/* Appends unidecode(chr(cp)) to out. */
void dalle_translit_append(dalle_sbuf *out, uint32_t cp);

/* unidecode of valid UTF-8 text: malloc'd ASCII, NUL-terminated, length in *out_len;
 * NULL on allocation failure. */
char *dalle_translit_text(const char *text, size_t n, size_t *out_len);

#endif /* DALLE_MODEL_TEXT_TRANSLIT_H */
