#!/usr/bin/env python3
"""gen_tokenizer_golden.py — token-id fixtures for the C BART and CLIP tokenizers.

Reads tests/golden/text/normalized.jsonl ({"category", "prompt", "normalized"}) and writes
  tests/golden/text/bart_ids.jsonl  {"category", "normalized", "ids", "mask"}
      transformers' BartTokenizerFast on models/tiny/vocab.json + merges.txt,
      truncation=True, max_length=64, padding="max_length":
        - every NORMALIZED text, under its category;
        - every RAW prompt, under "bart_raw" (what a normalize_text=false model tokenizes);
        - hand-written edge cases, under "bart_edge".
  tests/golden/text/clip_ids.jsonl  {"category", "prompt", "ids"}
      open_clip's SimpleTokenizer (its shipped bpe_simple_vocab_16e6.txt.gz), context 77:
        - every RAW prompt, under its category;
        - hand-written edge cases, under "clip_edge".
Lines are ASCII JSON (\\u escapes), in a fixed order.

    /work/venv-ref/bin/python tools/reference/gen_tokenizer_golden.py
"""
import json
import os
import shutil
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "golden", "text")
BART_LEN = 64
CLIP_CTX = 77

WORDS = ("a red fox jumps over the lazy dog near 12 old barns while 3 owls sing , and "
         "the farmer's daughter paints watercolor skies at sunset").split()

BART_EDGE = [
    "", " ", "   ", "\t", "\n", "\t\n ", " \n\n a", "a\tb\nc\r\nd", "  multiple   spaces  here  ",
    "trailing space ", " leading space", "a \n b", "tab\there", "end with tab\t",
    "\u00a0nbsp\u00a0word", "ideographic\u3000space", "line\u2028sep", "next\u0085line",
    "file\u001csep", "zero\u200bwidth", "soft\u00adhyphen", "\x00nul", "del\x7f", "bell\x07",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "na\u00efve fa\u00e7ade", "e\u0301 combining",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "mixed \u4e2d\u6587 and English 123 \u0440\u0443\u0441",
    "\u039f\u0394\u039f\u03a3 \u0130stanbul", "emoji \U0001F600\U0001F389 party \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "\U0001D518\U0001D52B\U0001D526\U0001D520\U0001D52C\U0001D521\U0001D522", "\u2460\u2461\u2462 \u216b \u00bd \u00b2 \u0663\u0664",
    "1234567890", "12,345.67 3.14159 007 1e10", "2022-06-21 10:30:00", "0x1F 0b1010", "99999999999999999999",
    "I'm don't we'll they've she'd it's you're", "'S 'T 'RE uppercase", "rock'n'roll '' '", "''s ''t",
    "<s>", "a <mask> b", "</s></s>", "<pad><unk>", "<s", "<<s>>", "x<s>y", " <mask>", "<mask> ", "<MASK>",
    "!!!???...", "a!b?c", "#hashtag @mention $5 %20 &amp; *bold* _under_ ~tilde~ `code` |pipe|",
    "\"quoted\" \u201ccurly\u201d \u2018single\u2019", "\u2014em\u2013en\u2026", "x" * 300,
    " ".join(WORDS * 8),  # ~200 tokens: truncation
    "".join(WORDS * 4),  # one long word
    "\U0001F600" * 40,  # long emoji run, 4-byte symbols
]

CLIP_EDGE = [
    "", " ", "A Photo Of A Cat", "\u0130stanbul \u0130I\u0307", "\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a3 \u03a3 A\u03a3. \u1f08\u03a3'",
    "it\u017f it'\u017f", "u\u0345", "a<end_of_text>b <start_of_text> <START_OF_TEXT>", "<|endoftext|>",
    "I'M DON'T WE'LL", "x'S y'Ll", "file\u001csep unit\u001fsep", "\u00a0nbsp\u3000wide\u2028line",
    "1234567890 \u0663\u0664 \u00bd", "\u65e5\u672c\u8a9e \u0645\u0631\u062d\u0628\u0627 \U0001F600\U0001F389",
    " ".join(WORDS * 8), "".join(WORDS * 4),
]


def bart_tokenizer():
    from transformers import BartTokenizerFast
    tmp = tempfile.mkdtemp()
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "models", "tiny", f), tmp)
    tok = BartTokenizerFast.from_pretrained(tmp)
    shutil.rmtree(tmp)
    return tok


def write(path, rows):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n")
    print(f"{os.path.relpath(path, ROOT)}: {len(rows)} rows")


def main():
    from open_clip.tokenizer import SimpleTokenizer

    with open(os.path.join(GOLDEN, "normalized.jsonl"), encoding="utf-8") as f:
        src = [json.loads(line) for line in f]

    bart = bart_tokenizer()
    bart_texts = [(d["category"], d["normalized"]) for d in src]
    bart_texts += [("bart_raw", d["prompt"]) for d in src]
    bart_texts += [("bart_edge", t) for t in BART_EDGE]
    enc = bart([t for _, t in bart_texts], truncation=True, max_length=BART_LEN, padding="max_length")
    write(os.path.join(GOLDEN, "bart_ids.jsonl"),
          [{"category": c, "normalized": t, "ids": ids, "mask": m}
           for (c, t), ids, m in zip(bart_texts, enc["input_ids"], enc["attention_mask"])])

    clip = SimpleTokenizer(context_length=CLIP_CTX)
    clip_texts = [(d["category"], d["prompt"]) for d in src] + [("clip_edge", t) for t in CLIP_EDGE]
    ids = clip([t for _, t in clip_texts]).tolist()
    write(os.path.join(GOLDEN, "clip_ids.jsonl"),
          [{"category": c, "prompt": t, "ids": i} for (c, t), i in zip(clip_texts, ids)])


if __name__ == "__main__":
    main()
