/* json_util.h — the two JSON steps that config.json and safetensors headers share.
 *
 * Contract: dalle_json_parse_object() parses exactly `n` bytes (no NUL terminator needed)
 * with duplicate keys rejected and returns the root object, or NULL with a one-line
 * DALLE_ERR_FORMAT message that names `label`. dalle_json_describe() renders a value for
 * "found …" in messages: scalars as their JSON text (so 2.0, "2" and true stay distinct),
 * containers as "an object" / "an array", a missing value as "nothing".
 * dalle_json_printable() makes a hostile key safe to quote in a one-line message.
 */
#ifndef DALLE_MODEL_LOADER_JSON_UTIL_H
#define DALLE_MODEL_LOADER_JSON_UTIL_H

#include <jansson.h>
#include <stddef.h>

#include "dalle.h"

json_t *dalle_json_parse_object(const void *bytes, size_t n, const char *label, dalle_error *err);

/* Writes at most cap bytes (cap ≥ 8) into buf, cutting long strings with "..."; returns buf. */
const char *dalle_json_describe(const json_t *v, char *buf, size_t cap);

/* Copies s into buf (cap ≥ 8) with control bytes as '?' and long text cut with "..."; returns buf.
 */
const char *dalle_json_printable(const char *s, char *buf, size_t cap);

#endif /* DALLE_MODEL_LOADER_JSON_UTIL_H */
