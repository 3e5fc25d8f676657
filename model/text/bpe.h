/* bpe.h — the byte-level BPE core that the BART and CLIP tokenizers share: GPT-2's
 * byte→unicode map, a string→id vocabulary, merge ranks keyed by id pairs, the merge loop,
 * and the file helpers both loaders use.
 *
 * Merge order: the pair with the lowest rank first, the leftmost first among equal ranks
 * (HF tokenizers' word merge). OpenAI's loop (merge every occurrence of the best pair, left
 * to right) gives the same result whenever a merged symbol's merges rank after the merge
 * that made it, which holds for every trained merges file.
 *
 * Contract: build a dalle_bpe with the _set/_add calls, then only read it: reads may run on
 * many threads at once. dalle_bpe_encode_word needs a caller-owned work area.
 */
#ifndef DALLE_MODEL_TEXT_BPE_H
#define DALLE_MODEL_TEXT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "dalle.h"

typedef struct dalle_bpe dalle_bpe;

/* Hints size the hash tables (they grow if exceeded). NULL when out of memory. */
dalle_bpe *dalle_bpe_new(size_t vocab_hint, size_t merges_hint);
void dalle_bpe_free(dalle_bpe *b);

/* Map string s[0..n) to id. Setting a string again replaces its id (a Python dict). */
dalle_status dalle_bpe_vocab_set(dalle_bpe *b, const char *s, size_t n, int32_t id,
                                 dalle_error *err);
/* The id of s[0..n), or -1. */
int32_t dalle_bpe_vocab_get(const dalle_bpe *b, const char *s, size_t n);
/* Distinct strings in the vocabulary. */
int dalle_bpe_vocab_count(const dalle_bpe *b);

/* Next merge rule "left right" (its rank is the number of rules added before it; a repeated
 * pair takes the later rank). left, right and left+right must be in the vocabulary, else
 * DALLE_ERR_FORMAT naming the missing one ("where" prefixes the message, e.g. "file:line"). */
dalle_status dalle_bpe_merge_add(dalle_bpe *b, const char *left, size_t nl, const char *right,
                                 size_t nr, const char *where, dalle_error *err);

/* GPT-2's byte→unicode map: the UTF-8 of byte's symbol into out (1 or 2 bytes); returns
 * its length. Printable Latin-1 bytes stand for themselves, the others for U+0100… in byte
 * order, so the symbols in code point order are the bytes in OpenAI's vocabulary order. */
int dalle_bpe_byte_symbol(uint8_t byte, char out[2]);
/* Code point of byte's symbol. */
uint32_t dalle_bpe_byte_codepoint(uint8_t byte);

/* Work area for words of up to max_len bytes; NULL when out of memory. Free with free(). */
void *dalle_bpe_work_new(size_t max_len);

/* BPE of the bytes s[0..n) as one word: symbol i is byte_ids[s[i]] (the last one
 * last_ids[s[n-1]] when last_ids is not NULL, for CLIP's "</w>"); symbols whose id is −1
 * are dropped, as HF does without an unk token. Appends at most cap ids to out; returns how
 * many. work: from dalle_bpe_work_new(≥ n). */
int dalle_bpe_encode_word(const dalle_bpe *b, const uint8_t *s, size_t n,
                          const int32_t byte_ids[256], const int32_t *last_ids, int32_t *out,
                          int cap, void *work);

/* ---- loader helpers ----------------------------------------------------------------- */

/* Whole file into a malloc'd NUL-terminated buffer; DALLE_ERR_IO names the path. */
dalle_status dalle_bpe_read_file(const char *path, char **buf, size_t *n, dalle_error *err);

/* Next line of [*p, end): sets *line and *len (without "\n" or "\r\n"), advances *p.
 * Returns 0 at the end of the text. A final line without "\n" counts; an empty text after
 * the last "\n" does not. */
int dalle_bpe_next_line(const char **p, const char *end, const char **line, size_t *len);

/* Splits a merges line "left right" at its one space; 0 unless both parts are non-empty and
 * there is exactly one space. */
int dalle_bpe_split_merge(const char *line, size_t len, size_t *nl, const char **right, size_t *nr);

#endif /* DALLE_MODEL_TEXT_BPE_H */
