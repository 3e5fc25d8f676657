/* sbuf.h — a growable byte buffer for building text (JSON, metrics, normalized prompts).
 *
 * Contract: a dalle_sbuf starts zeroed ({0}); it remembers an allocation failure (oom)
 * instead of reporting it at each append, and dalle_sbuf_finish then frees it and returns
 * NULL. One thread uses a buffer at a time.
 */
#ifndef DALLE_COMMON_SBUF_H
#define DALLE_COMMON_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} dalle_sbuf;

void dalle_sbuf_put(dalle_sbuf *b, const void *s, size_t n);
void dalle_sbuf_putc(dalle_sbuf *b, char c);
void dalle_sbuf_put_cp(dalle_sbuf *b, uint32_t cp); /* as UTF-8 */
/* NUL-terminates and hands over the bytes (length in *out_len when non-NULL); NULL (and
 * the buffer freed) after an allocation failure. The buffer is empty afterwards. */
char *dalle_sbuf_finish(dalle_sbuf *b, size_t *out_len);
void dalle_sbuf_free(dalle_sbuf *b);

#endif /* DALLE_COMMON_SBUF_H */
