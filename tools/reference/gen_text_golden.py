#!/usr/bin/env python3
"""gen_text_golden.py — runs dalle-mini's TextNormalizer on every corpus prompt and writes
tests/golden/text/normalized.jsonl ({"category", "prompt", "normalized"}, same order).

The peer is dalle_mini/model/text.py from the pinned dalle-mini 0.1.5, loaded by file (the
package __init__ imports wandb). Two patches make it runnable offline and deterministic,
the same two choices our C normaliser makes:
  - hf_hub_download returns our word-frequency file (--wiki) instead of downloading it;
  - the person-token draw (random.choices) always picks the first choice, "a person".

    /work/venv-ref/bin/python tools/reference/gen_text_golden.py \
        [--prompts tests/golden/text/prompts.jsonl] [--out tests/golden/text/normalized.jsonl] \
        [--wiki models/tiny/enwiki-words-frequency.txt]
"""

import argparse
import importlib.util
import json
import os
import site
import types


def load_normalizer(wiki_path):
    """dalle-mini's TextNormalizer, patched as described above."""
    found = [os.path.join(d, "dalle_mini", "model", "text.py") for d in site.getsitepackages()]
    found = [p for p in found if os.path.exists(p)]
    if not found:
        raise SystemExit("dalle_mini/model/text.py not found in site-packages")
    text_py = found[0]
    spec = importlib.util.spec_from_file_location("dm_text", text_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    wiki_abs = os.path.abspath(wiki_path)
    mod.hf_hub_download = lambda *a, **k: wiki_abs
    mod.random = types.SimpleNamespace(choices=lambda population, *a, **k: [population[0]])
    return mod.TextNormalizer()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", default="tests/golden/text/prompts.jsonl")
    ap.add_argument("--out", default="tests/golden/text/normalized.jsonl")
    ap.add_argument("--wiki", default="models/tiny/enwiki-words-frequency.txt")
    args = ap.parse_args()
    normalize = load_normalizer(args.wiki)
    n = 0
    with open(args.prompts, encoding="utf-8") as fin, \
            open(args.out, "w", encoding="utf-8", newline="\n") as fout:
        for line in fin:
            d = json.loads(line)
            row = {"category": d["category"], "prompt": d["prompt"],
                   "normalized": normalize(d["prompt"])}
            fout.write(json.dumps(row, ensure_ascii=True) + "\n")
            n += 1
    print(f"wrote {n} normalized prompts to {args.out}")


if __name__ == "__main__":
    main()
