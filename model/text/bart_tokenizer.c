/* bart_tokenizer.c — BartTokenizerFast (transformers 5 = RobertaTokenizer on HF tokenizers)
 * from vocab.json + merges.txt, as in bart_tokenizer.h.
 *
 * Order, as HF does it: the special-token strings (<s> <pad> </s> <unk> <mask>, those that
 * vocab.json has) are cut out of the raw text first, leftmost-longest, and become their ids;
 * each stretch between them is pre-tokenized with the GPT-2 pattern, byte-mapped and merged.
 * HF's BPE model has no unk token here, so a byte symbol missing from vocab.json is dropped
 * (never happens with the full 256-symbol alphabet). A merges line must be "left right";
 * lines starting with "#version" are skipped; left, right and left+right must be in
 * vocab.json (HF refuses the files otherwise).
 */
#include "bart_tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "error.h"
#include "pretokenize.h"

#define MAX_SPECIALS 5

struct dalle_bart_tokenizer {
    dalle_bpe *bpe;
    int32_t byte_ids[256]; /* id of each byte's symbol, −1 if vocab.json lacks it */
    int vocab_size;        /* entries in vocab.json */
    int32_t bos, eos, pad;
    struct {
        const char *text;
        int len;
        int32_t id;
    } specials[MAX_SPECIALS];
    int n_specials;
};

static dalle_status load_vocab(dalle_bart_tokenizer *tok, const char *path, dalle_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f)
            return dalle_error_set(err, DALLE_ERR_IO, "%s: cannot open", path);
        fclose(f);
        return dalle_error_set(err, DALLE_ERR_FORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
    }
    dalle_status s = DALLE_OK;
    if (!json_is_object(root)) {
        s = dalle_error_set(err, DALLE_ERR_FORMAT, "%s: not a JSON object of token → id", path);
    } else if (!(tok->bpe = dalle_bpe_new(json_object_size(root), json_object_size(root)))) {
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    } else {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) {
            json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
            if (id < 0 || id > INT32_MAX) {
                s = dalle_error_set(err, DALLE_ERR_FORMAT, "%s: \"%s\" has no valid id", path, key);
                break;
            }
            s = dalle_bpe_vocab_set(tok->bpe, key, strlen(key), (int32_t)id, err);
            if (s != DALLE_OK)
                break;
        }
        tok->vocab_size = (int)json_object_size(root);
    }
    json_decref(root);
    return s;
}

static dalle_status load_merges(dalle_bart_tokenizer *tok, const char *path, dalle_error *err) {
    char *buf;
    size_t n;
    dalle_status s = dalle_bpe_read_file(path, &buf, &n, err);
    if (s != DALLE_OK)
        return s;
    const char *p = buf, *line, *right;
    size_t len, nl, nr;
    char where[512];
    for (int lineno = 1; s == DALLE_OK && dalle_bpe_next_line(&p, buf + n, &line, &len); lineno++) {
        if (len >= 8 && !memcmp(line, "#version", 8))
            continue;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (!dalle_bpe_split_merge(line, len, &nl, &right, &nr))
            s = dalle_error_set(err, DALLE_ERR_FORMAT, "%s: expected \"left right\"", where);
        else
            s = dalle_bpe_merge_add(tok->bpe, line, nl, right, nr, where, err);
    }
    free(buf);
    return s;
}

static dalle_status bind_specials(dalle_bart_tokenizer *tok, const char *vocab_path,
                                  dalle_error *err) {
    static const char *const names[MAX_SPECIALS] = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"};
    int32_t ids[MAX_SPECIALS];
    for (int k = 0; k < MAX_SPECIALS; k++) {
        ids[k] = dalle_bpe_vocab_get(tok->bpe, names[k], strlen(names[k]));
        if (ids[k] < 0 && k <= 2)
            return dalle_error_set(err, DALLE_ERR_FORMAT, "%s: no \"%s\" entry", vocab_path,
                                   names[k]);
        if (ids[k] >= 0) {
            tok->specials[tok->n_specials].text = names[k];
            tok->specials[tok->n_specials].len = (int)strlen(names[k]);
            tok->specials[tok->n_specials++].id = ids[k];
        }
    }
    tok->bos = ids[0];
    tok->pad = ids[1];
    tok->eos = ids[2];
    for (int b = 0; b < 256; b++) {
        char sym[2];
        tok->byte_ids[b] =
            dalle_bpe_vocab_get(tok->bpe, sym, (size_t)dalle_bpe_byte_symbol((uint8_t)b, sym));
    }
    return DALLE_OK;
}

dalle_status dalle_bart_tokenizer_load(dalle_bart_tokenizer **out, const char *vocab_path,
                                       const char *merges_path, dalle_error *err) {
    *out = NULL;
    dalle_bart_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    dalle_status s = load_vocab(tok, vocab_path, err);
    if (s == DALLE_OK)
        s = bind_specials(tok, vocab_path, err);
    if (s == DALLE_OK)
        s = load_merges(tok, merges_path, err);
    if (s != DALLE_OK) {
        dalle_bart_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return DALLE_OK;
}

void dalle_bart_tokenizer_free(dalle_bart_tokenizer *tok) {
    if (!tok)
        return;
    dalle_bpe_free(tok->bpe);
    free(tok);
}

int dalle_bart_tokenizer_vocab_size(const dalle_bart_tokenizer *tok) {
    return tok->vocab_size;
}

/* The longest special token at cp[i] (index into tok->specials), or −1. */
static int special_at(const dalle_bart_tokenizer *tok, const uint32_t *cp, int n, int i) {
    int best = -1;
    for (int k = 0; k < tok->n_specials; k++) {
        int len = tok->specials[k].len, j = 0;
        while (j < len && i + j < n && cp[i + j] == (uint8_t)tok->specials[k].text[j])
            j++;
        if (j == len && (best < 0 || len > tok->specials[best].len))
            best = k;
    }
    return best;
}

/* Content ids of text (cp/off from dalle_utf8_decode) into out, at most cap; returns how
 * many. */
static int encode_content(const dalle_bart_tokenizer *tok, const char *text, const uint32_t *cp,
                          const uint32_t *off, int n, int32_t *out, int cap, void *work) {
    int count = 0;
    for (int i = 0; i < n && count < cap;) {
        int end = i, sp = -1;
        while (end < n && (cp[end] != '<' || (sp = special_at(tok, cp, n, end)) < 0))
            end++;
        for (int p = i; p < end && count < cap;) {
            int e = dalle_pretok_gpt2_match(cp, end, p);
            count +=
                dalle_bpe_encode_word(tok->bpe, (const uint8_t *)text + off[p], off[e] - off[p],
                                      tok->byte_ids, NULL, out + count, cap - count, work);
            p = e;
        }
        if (sp >= 0 && count < cap)
            out[count++] = tok->specials[sp].id;
        i = sp >= 0 ? end + tok->specials[sp].len : end;
    }
    return count;
}

dalle_status dalle_bart_tokenize(const dalle_bart_tokenizer *tok, const char *text, size_t n,
                                 int max_len, int32_t *ids, uint8_t *mask, int *n_real,
                                 dalle_error *err) {
    if (max_len < 2 || !ids || !mask || (!text && n))
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "bad arguments to the BART tokenizer");
    if (n > (size_t)INT32_MAX / 8)
        return dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text of %zu bytes is too long", n);
    uint32_t *cp = malloc((n + 1) * sizeof *cp), *off = malloc((n + 1) * sizeof *off);
    void *work = dalle_bpe_work_new(n);
    dalle_status s = DALLE_OK;
    int ncp = 0;
    if (!cp || !off || !work)
        s = dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    else if ((ncp = dalle_utf8_decode(text, n, cp, off)) < 0)
        s = dalle_error_set(err, DALLE_ERR_INVALID_ARG, "text is not valid UTF-8");
    if (s == DALLE_OK) {
        int count = encode_content(tok, text, cp, off, ncp, ids + 1, max_len - 2, work);
        ids[0] = tok->bos;
        ids[count + 1] = tok->eos;
        for (int k = 0; k < max_len; k++) {
            if (k >= count + 2)
                ids[k] = tok->pad;
            mask[k] = k < count + 2;
        }
        if (n_real)
            *n_real = count + 2;
    }
    free(cp);
    free(off);
    free(work);
    return s;
}
