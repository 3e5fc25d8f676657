/* base64.h — RFC 4648 base64, standard alphabet, '=' padding, no line breaks.
 *
 * Contract: dalle_base64_encoded_len(n) = 4·⌈n/3⌉ (without the NUL); dalle_base64_encode
 * writes exactly that many characters plus a NUL into out (which must hold len + 1).
 */
#ifndef DALLE_COMMON_BASE64_H
#define DALLE_COMMON_BASE64_H

#include <stddef.h>
#include <stdint.h>

size_t dalle_base64_encoded_len(size_t n);
void dalle_base64_encode(const uint8_t *in, size_t n, char *out);

#endif /* DALLE_COMMON_BASE64_H */
