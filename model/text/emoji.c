/* emoji.c — demojize (see emoji.h). This follows emoji 2.16.0's tokenizer step by step,
 * because its answers on odd input (a ZWJ after a non-RGI pair, a skin tone after a ZWJ,
 * a trie path that ends without an emoji) come from the exact order of its moves:
 *   - at a character that starts some emoji, walk the sequence trie as far as the text
 *     allows (stopping at a position marked "ignore"); an emoji is found only if the
 *     walk ends on a complete sequence;
 *   - a ZWJ right after an emoji that did not continue into a longer sequence is marked
 *     "ignore" and the scan steps back over that emoji (over the last two tokens when it
 *     was a component such as a skin tone), so the pieces are matched on their own and
 *     the ZWJ is kept between them;
 *   - pending tokens are flushed (can no longer be stepped back over) at each character
 *     that neither starts an emoji nor is such a ZWJ; U+FE0E/U+FE0F left over are dropped.
 * The trie is the sorted table emoji.kv: the sequences with a given prefix are contiguous.
 */
#include "model/text/emoji.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/text/textutil.h"

DALLE_EMBED(emoji_kv, "model/text/data/emoji.kv");

enum { ZWJ = 0x200D, VS15 = 0xFE0E, VS16 = 0xFE0F };

typedef struct {
    size_t start, end; /* code point range */
    size_t entry;      /* table index, or SIZE_MAX for a plain character */
} token;

typedef struct {
    dalle_kv kv;
    const char *text;
    const size_t *off; /* byte offset of each code point, off[len] = n */
} scan;

/* Table index of the first sequence that starts with code points [i, j), or SIZE_MAX. */
static size_t prefix_node(const scan *s, size_t i, size_t j) {
    const char *p = s->text + s->off[i];
    size_t pn = s->off[j] - s->off[i], kn;
    size_t lb = dalle_kv_lower_bound(&s->kv, p, pn);
    if (lb == s->kv.count)
        return SIZE_MAX;
    const char *k = dalle_kv_key(&s->kv, lb, &kn);
    return kn >= pn && memcmp(k, p, pn) == 0 ? lb : SIZE_MAX;
}

/* Whether table entry `node` is exactly the sequence [i, j). */
static bool node_is(const scan *s, size_t node, size_t i, size_t j) {
    size_t kn;
    dalle_kv_key(&s->kv, node, &kn);
    return kn == s->off[j] - s->off[i];
}

/* Table index of the sequence [t.start, t.end) (plain characters too), or SIZE_MAX. */
static size_t token_entry(const scan *s, token t) {
    size_t node = prefix_node(s, t.start, t.end);
    return node != SIZE_MAX && node_is(s, node, t.start, t.end) ? node : SIZE_MAX;
}

static bool is_component(const scan *s, size_t entry) {
    size_t vn;
    return dalle_kv_value(&s->kv, entry, &vn)[0] == 'C';
}

char *dalle_emoji_demojize(const char *text, size_t n, size_t *out_len) {
    size_t len = 0;
    for (size_t i = 0; i < n; i += dalle_utf8_len((unsigned char)text[i]))
        len++;
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *off = malloc((len + 1) * sizeof *off);
    bool *ignore = calloc(len + 1, sizeof *ignore);
    token *tok = malloc((len + 1) * sizeof *tok);
    dalle_sbuf out = {0};
    if (!cp || !off || !ignore || !tok) {
        out.oom = true;
        goto done;
    }
    for (size_t i = 0, k = 0; k < len; k++) {
        off[k] = i;
        cp[k] = dalle_utf8_next(text, n, &i);
    }
    off[len] = n;
    scan s = {dalle_kv_open(emoji_kv, emoji_kv_end), text, off};

    size_t ntok = 0, base = 0; /* tok[base..ntok) is the pending "result" list */
    size_t i = 0;
    while (i < len) {
        bool consumed = false;
        uint32_t c = cp[i];
        size_t node = prefix_node(&s, i, i + 1);
        if (ignore[i]) {
            if (c == ZWJ)
                tok[ntok++] = (token){i, i + 1, SIZE_MAX};
            i++;
            continue;
        } else if (node != SIZE_MAX) {
            size_t j = i + 1;
            for (size_t next; j < len && (next = prefix_node(&s, i, j + 1)) != SIZE_MAX; j++) {
                if (ignore[j])
                    break;
                node = next;
            }
            if (node_is(&s, node, i, j)) {
                tok[ntok++] = (token){i, j, node};
                i = j - 1;
                consumed = true;
            }
        } else if (c == ZWJ && ntok > base && i > 0 && prefix_node(&s, i - 1, i) != SIZE_MAX &&
                   token_entry(&s, tok[ntok - 1]) != SIZE_MAX) {
            ignore[i] = true;
            token last = tok[ntok - 1];
            if (is_component(&s, token_entry(&s, last))) {
                size_t take = ntok - base >= 2 ? 2 : 1, back = last.end - last.start;
                if (take == 2)
                    back += tok[ntok - 2].end - tok[ntok - 2].start;
                DALLE_ASSERT(back <= i);
                i -= back;
                ntok -= cp[i] == ZWJ ? 1 : take;
                if (cp[i] == ZWJ)
                    i++;
            } else {
                i -= last.end - last.start;
                ntok--;
            }
            continue;
        } else {
            base = ntok;
        }
        if (!consumed && c != VS15 && c != VS16)
            tok[ntok++] = (token){i, i + 1, SIZE_MAX};
        i++;
    }
    for (size_t k = 0; k < ntok; k++) {
        if (tok[k].entry == SIZE_MAX) {
            dalle_sbuf_put(&out, text + off[tok[k].start], off[tok[k].end] - off[tok[k].start]);
        } else {
            size_t vn;
            const char *v = dalle_kv_value(&s.kv, tok[k].entry, &vn);
            dalle_sbuf_put(&out, v + 1, vn - 1);
        }
    }
done:
    free(cp);
    free(off);
    free(ignore);
    free(tok);
    return dalle_sbuf_finish(&out, out_len);
}
