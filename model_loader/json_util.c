/* json_util.c — strict JSON parsing and value rendering for messages (see json_util.h). */
#include "model_loader/json_util.h"

#include <string.h>

#include "common/error.h"

json_t *dalle_json_parse_object(const void *bytes, size_t n, const char *label, dalle_error *err) {
    json_error_t e;
    json_t *root = json_loadb(bytes, n, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        char text[sizeof e.text]; /* jansson quotes the input, raw newlines included */
        dalle_error_set(err, DALLE_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", label,
                        dalle_json_printable(e.text, text, sizeof text), e.line, e.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        char found[48];
        dalle_error_set(err, DALLE_ERR_FORMAT, "%s: expected a JSON object, found %s", label,
                        dalle_json_describe(root, found, sizeof found));
        json_decref(root);
        return NULL;
    }
    return root;
}

const char *dalle_json_describe(const json_t *v, char *buf, size_t cap) {
    if (!v)
        return "nothing";
    if (json_is_object(v))
        return "an object";
    if (json_is_array(v))
        return "an array";
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    if (!text)
        return "a value";
    dalle_json_printable(text, buf, cap);
    free(text);
    return buf;
}

const char *dalle_json_printable(const char *s, char *buf, size_t cap) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    if (s[i])
        memcpy(buf + cap - 4, "...", 4);
    return buf;
}
