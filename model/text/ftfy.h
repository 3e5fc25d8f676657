/* ftfy.h — ftfy.fix_text (default options, ftfy 6.3.1) for the text paths: HTML entity
 * unescape ("auto" rule), mojibake repair (fix_encoding), terminal escape removal,
 * C1/latin-1 control fixes, latin ligatures, full-width characters, curly quotes, line
 * breaks, control characters, NFC. What is not implemented is listed at the top of ftfy.c.
 *
 * Contract: input valid UTF-8; output malloc'd, NUL-terminated, *out_len bytes; NULL on
 * allocation failure or invalid UTF-8. Thread-safe (the tables are read-only).
 */
#ifndef DALLE_MODEL_TEXT_FTFY_H
#define DALLE_MODEL_TEXT_FTFY_H

#include <stddef.h>

char *dalle_ftfy_fix_text(const char *text, size_t n, size_t *out_len);

/* Python html.unescape (HTML5 named entities, numeric references with its replacement
 * rules). Same memory contract. */
char *dalle_html_unescape(const char *text, size_t n, size_t *out_len);

#endif /* DALLE_MODEL_TEXT_FTFY_H */
