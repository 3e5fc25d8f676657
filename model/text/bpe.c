/* bpe.c — byte-level BPE core (see bpe.h): two open-addressing hash tables (string → id,
 * id pair → rank and merged id) and the heap-ordered merge loop. */
#include "bpe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
    uint32_t off, len; /* the string in b->arena */
    uint32_t hash;
    int32_t id; /* −1: empty slot */
} str_slot;

typedef struct {
    uint64_t key; /* left id << 32 | right id; PAIR_EMPTY: empty slot */
    int32_t rank, merged;
} pair_slot;

#define PAIR_EMPTY UINT64_MAX

struct dalle_bpe {
    char *arena; /* vocabulary strings, back to back */
    size_t arena_len, arena_cap;
    str_slot *strs;
    size_t str_cap, n_strs; /* str_cap: power of two */
    pair_slot *pairs;
    size_t pair_cap, n_pairs;
    int n_merges;
};

static uint32_t str_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static size_t pair_hash(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

dalle_bpe *dalle_bpe_new(size_t vocab_hint, size_t merges_hint) {
    dalle_bpe *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->str_cap = pow2_at_least(2 * vocab_hint);
    b->pair_cap = pow2_at_least(2 * merges_hint);
    b->arena_cap = 8 * vocab_hint + 64;
    b->strs = malloc(b->str_cap * sizeof *b->strs);
    b->pairs = malloc(b->pair_cap * sizeof *b->pairs);
    b->arena = malloc(b->arena_cap);
    if (!b->strs || !b->pairs || !b->arena) {
        dalle_bpe_free(b);
        return NULL;
    }
    for (size_t i = 0; i < b->str_cap; i++)
        b->strs[i].id = -1;
    for (size_t i = 0; i < b->pair_cap; i++)
        b->pairs[i].key = PAIR_EMPTY;
    return b;
}

void dalle_bpe_free(dalle_bpe *b) {
    if (!b)
        return;
    free(b->arena);
    free(b->strs);
    free(b->pairs);
    free(b);
}

/* ---- string → id ---------------------------------------------------------------------- */

static str_slot *str_find(const dalle_bpe *b, const char *s, size_t n, uint32_t h) {
    for (size_t i = h & (b->str_cap - 1);; i = (i + 1) & (b->str_cap - 1)) {
        str_slot *e = &b->strs[i];
        if (e->id < 0 || (e->hash == h && e->len == n && !memcmp(b->arena + e->off, s, n)))
            return e;
    }
}

static int str_grow(dalle_bpe *b) {
    str_slot *old = b->strs;
    size_t old_cap = b->str_cap;
    b->strs = malloc(2 * old_cap * sizeof *b->strs);
    if (!b->strs) {
        b->strs = old;
        return 0;
    }
    b->str_cap = 2 * old_cap;
    for (size_t i = 0; i < b->str_cap; i++)
        b->strs[i].id = -1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].id >= 0)
            *str_find(b, b->arena + old[i].off, old[i].len, old[i].hash) = old[i];
    free(old);
    return 1;
}

dalle_status dalle_bpe_vocab_set(dalle_bpe *b, const char *s, size_t n, int32_t id,
                                 dalle_error *err) {
    DALLE_ASSERT(id >= 0);
    if (n > UINT32_MAX / 2)
        return dalle_error_set(err, DALLE_ERR_FORMAT, "vocabulary entry too long");
    if (2 * (b->n_strs + 1) > b->str_cap && !str_grow(b))
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    uint32_t h = str_hash(s, n);
    str_slot *e = str_find(b, s, n, h);
    if (e->id >= 0) {
        e->id = id;
        return DALLE_OK;
    }
    if (b->arena_len + n > b->arena_cap) {
        size_t cap = 2 * b->arena_cap + n;
        char *a = realloc(b->arena, cap);
        if (!a)
            return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
        b->arena = a;
        b->arena_cap = cap;
    }
    memcpy(b->arena + b->arena_len, s, n);
    *e = (str_slot){.off = (uint32_t)b->arena_len, .len = (uint32_t)n, .hash = h, .id = id};
    b->arena_len += n;
    b->n_strs++;
    return DALLE_OK;
}

int32_t dalle_bpe_vocab_get(const dalle_bpe *b, const char *s, size_t n) {
    return str_find(b, s, n, str_hash(s, n))->id;
}

int dalle_bpe_vocab_count(const dalle_bpe *b) {
    return (int)b->n_strs;
}

/* ---- (left, right) → rank, merged ----------------------------------------------------- */

static pair_slot *pair_find(pair_slot *t, size_t cap, uint64_t key) {
    for (size_t i = pair_hash(key, cap);; i = (i + 1) & (cap - 1))
        if (t[i].key == key || t[i].key == PAIR_EMPTY)
            return &t[i];
}

static const pair_slot *pair_get(const dalle_bpe *b, int32_t left, int32_t right) {
    const pair_slot *e =
        pair_find(b->pairs, b->pair_cap, (uint64_t)(uint32_t)left << 32 | (uint32_t)right);
    return e->key == PAIR_EMPTY ? NULL : e;
}

static int pair_grow(dalle_bpe *b) {
    size_t cap = 2 * b->pair_cap;
    pair_slot *t = malloc(cap * sizeof *t);
    if (!t)
        return 0;
    for (size_t i = 0; i < cap; i++)
        t[i].key = PAIR_EMPTY;
    for (size_t i = 0; i < b->pair_cap; i++)
        if (b->pairs[i].key != PAIR_EMPTY)
            *pair_find(t, cap, b->pairs[i].key) = b->pairs[i];
    free(b->pairs);
    b->pairs = t;
    b->pair_cap = cap;
    return 1;
}

dalle_status dalle_bpe_merge_add(dalle_bpe *b, const char *left, size_t nl, const char *right,
                                 size_t nr, const char *where, dalle_error *err) {
    int32_t l = dalle_bpe_vocab_get(b, left, nl), r = dalle_bpe_vocab_get(b, right, nr);
    char *joined = malloc(nl + nr + 1);
    if (!joined)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    memcpy(joined, left, nl);
    memcpy(joined + nl, right, nr);
    joined[nl + nr] = 0;
    int32_t m = dalle_bpe_vocab_get(b, joined, nl + nr);
    dalle_status s = DALLE_OK;
    if (l < 0 || r < 0 || m < 0) {
        const char *miss = joined;
        size_t nmiss = nl + nr;
        if (l < 0)
            miss = left, nmiss = nl;
        else if (r < 0)
            miss = right, nmiss = nr;
        s = dalle_error_set(err, DALLE_ERR_FORMAT,
                            "%s: merge \"%.*s %.*s\" uses \"%.*s\", which the vocabulary lacks",
                            where, (int)nl, left, (int)nr, right, (int)nmiss, miss);
    } else if (2 * (b->n_pairs + 1) > b->pair_cap && !pair_grow(b)) {
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    } else {
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
        pair_slot *e = pair_find(b->pairs, b->pair_cap, key);
        if (e->key == PAIR_EMPTY)
            b->n_pairs++;
        *e = (pair_slot){.key = key, .rank = b->n_merges, .merged = m};
        b->n_merges++;
    }
    free(joined);
    return s;
}

/* ---- bytes ---------------------------------------------------------------------------- */

uint32_t dalle_bpe_byte_codepoint(uint8_t c) {
    if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)
        return c;
    /* the 68 other bytes, in order, from U+0100: 0x00–0x20, 0x7F–0xA0, 0xAD */
    if (c <= 0x20)
        return 0x100u + c;
    if (c <= 0xA0)
        return 0x100u + 33 + (c - 0x7Fu);
    return 0x100u + 33 + 34;
}

int dalle_bpe_byte_symbol(uint8_t byte, char out[2]) {
    uint32_t cp = dalle_bpe_byte_codepoint(byte);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ---- merge loop ----------------------------------------------------------------------- */

typedef struct {
    size_t cap;     /* longest word */
    int32_t *sym;   /* [cap] symbol ids; −1 once merged into its left neighbour */
    int32_t *next;  /* [cap] linked list of live symbols; −1 ends it */
    int32_t *prev;  /* [cap] */
    uint64_t *heap; /* [3·cap] rank << 32 | position, min-heap */
} bpe_work;

void *dalle_bpe_work_new(size_t max_len) {
    if (max_len == 0)
        max_len = 1;
    bpe_work *w = malloc(sizeof *w + max_len * (3 * sizeof(int32_t) + 3 * sizeof(uint64_t)));
    if (!w)
        return NULL;
    w->cap = max_len;
    w->heap = (uint64_t *)(w + 1);
    w->sym = (int32_t *)(w->heap + 3 * max_len);
    w->next = w->sym + max_len;
    w->prev = w->next + max_len;
    return w;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

/* Queue the pair that starts at live position i, if it has a merge. */
static void push_pair(const dalle_bpe *b, bpe_work *w, size_t *nh, int32_t i) {
    if (i < 0 || w->next[i] < 0)
        return;
    const pair_slot *p = pair_get(b, w->sym[i], w->sym[w->next[i]]);
    if (p)
        heap_push(w->heap, nh, (uint64_t)(uint32_t)p->rank << 32 | (uint32_t)i);
}

int dalle_bpe_encode_word(const dalle_bpe *b, const uint8_t *s, size_t n,
                          const int32_t byte_ids[256], const int32_t *last_ids, int32_t *out,
                          int cap, void *work) {
    bpe_work *w = work;
    DALLE_ASSERT(n <= w->cap);
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = last_ids && i == n - 1 ? last_ids[s[i]] : byte_ids[s[i]];
        if (id >= 0)
            w->sym[m++] = id;
    }
    for (int32_t k = 0; k < m; k++) {
        w->prev[k] = k - 1;
        w->next[k] = k + 1 < m ? k + 1 : -1;
    }
    size_t nh = 0;
    for (int32_t k = 0; k + 1 < m; k++)
        push_pair(b, w, &nh, k);
    while (nh > 0) {
        uint64_t top = heap_pop(w->heap, &nh);
        int32_t i = (int32_t)(top & 0xFFFFFFFFu), j = w->next[i];
        if (w->sym[i] < 0 || j < 0)
            continue; /* stale: merged away, or now last */
        const pair_slot *p = pair_get(b, w->sym[i], w->sym[j]);
        if (!p || (uint64_t)p->rank != top >> 32)
            continue; /* stale: a neighbour changed */
        w->sym[i] = p->merged;
        w->sym[j] = -1;
        w->next[i] = w->next[j];
        if (w->next[j] >= 0)
            w->prev[w->next[j]] = i;
        push_pair(b, w, &nh, w->prev[i]);
        push_pair(b, w, &nh, i);
    }
    int count = 0;
    for (int32_t k = m > 0 ? 0 : -1; k >= 0 && count < cap; k = w->next[k])
        out[count++] = w->sym[k];
    return count;
}

/* ---- loader helpers ------------------------------------------------------------------- */

dalle_status dalle_bpe_read_file(const char *path, char **buf, size_t *n, dalle_error *err) {
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_error_set(err, DALLE_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *p = malloc(cap);
    while (p) {
        len += fread(p + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *q = realloc(p, 2 * cap);
        if (!q)
            free(p);
        p = q;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!p)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory reading %s", path);
    if (bad) {
        free(p);
        return dalle_error_set(err, DALLE_ERR_IO, "%s: read error", path);
    }
    p[len] = 0;
    *buf = p;
    *n = len;
    return DALLE_OK;
}

int dalle_bpe_next_line(const char **p, const char *end, const char **line, size_t *len) {
    if (*p >= end)
        return 0;
    const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r')
        e--;
    *line = s;
    *len = (size_t)(e - s);
    return 1;
}

int dalle_bpe_split_merge(const char *line, size_t len, size_t *nl, const char **right,
                          size_t *nr) {
    const char *sp = memchr(line, ' ', len);
    if (!sp || sp == line || sp + 1 == line + len ||
        memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)))
        return 0;
    *nl = (size_t)(sp - line);
    *right = sp + 1;
    *nr = len - *nl - 1;
    return 1;
}
