#!/usr/bin/env python3
"""cpu_bart.py — text stage + 256-step guided decode on the CPU, ours vs min-dalle, same run.

Builds a random-weight DalleBart at DALL·E mini size (d 1024, 12+12 layers, 16 heads, GLU 2730,
text vocab 50264, 16384 image codes) with min-dalle's own classes, saves it in min-dalle's
format, converts it with tools/convert.py (nothing is stored in the repo), then times:
  * min-dalle: encoder on [uncond, cond] + its 256-step sample_tokens loop (torch, fp32);
  * ours: build/dalle-cli tokens -n N (encoder + decoder timings it reports, and wall time).
Both use the same thread count. Prints a table and the ratio. Needs the reference venv
(tools/reference/requirements.txt) and a built build/dalle-cli.

usage: /work/venv-ref/bin/python bench/cpu_bart.py [--threads 2] [--images 1] [--size mini|tiny]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from min_dalle.models import DalleBartDecoder, DalleBartEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "mini": dict(d=1024, layers=12, heads=16, glu=2730, text_vocab=50264),
    "tiny": dict(d=64, layers=2, heads=4, glu=96, text_vocab=3999),
}
IMAGE_VOCAB = 16384


def build(size):
    torch.manual_seed(0)
    s = SIZES[size]
    enc = DalleBartEncoder(layer_count=s["layers"], embed_count=s["d"], attention_head_count=s["heads"],
                           text_vocab_count=s["text_vocab"], text_token_count=64, glu_embed_count=s["glu"],
                           device="cpu").eval()
    dec = DalleBartDecoder(image_vocab_count=IMAGE_VOCAB, embed_count=s["d"], attention_head_count=s["heads"],
                           glu_embed_count=s["glu"], layer_count=s["layers"], device="cpu").eval()
    with torch.no_grad():
        for m in (enc, dec):
            for name, p in m.named_parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.02)
    return enc, dec


def save_min_dalle(enc, dec, d):
    def state(m):  # bias-only norms carry no weight in the published checkpoints
        bias_only = ("pre_self_attn_layer_norm", "pre_encoder_attn_layer_norm", "glu.ln0", "glu.ln1", "final_ln")
        return {k: v for k, v in m.state_dict().items()
                if not (k.endswith(".weight") and any(b in k for b in bias_only))}
    torch.save(state(enc), os.path.join(d, "encoder.pt"))
    torch.save(state(dec), os.path.join(d, "decoder.pt"))


def time_min_dalle(enc, dec, ids, n, threads):
    torch.set_num_threads(threads)
    image_count = n
    with torch.no_grad():
        t0 = time.perf_counter()
        text = torch.tensor(ids, dtype=torch.long)
        enc_state = enc.forward(text)
        t1 = time.perf_counter()
        idx = [0] * image_count + [1] * image_count
        text = text[idx]
        enc_state = enc_state[idx]
        mask = text.not_equal(1)[:, None, None, :]
        att = torch.zeros(dec.layer_count, image_count * 4, 256, dec.embed_count)
        toks = torch.full((image_count, 257), 2 ** 14 - 1, dtype=torch.long)
        torch.manual_seed(1)
        settings = torch.tensor([1.0, 50, 10.0], dtype=torch.float32)
        ti = torch.arange(256)
        for i in range(256):
            toks[:, i + 1], att = dec.sample_tokens(settings=settings, attention_mask=mask, encoder_state=enc_state,
                                                    attention_state=att, prev_tokens=toks[:, [i]], token_index=ti[[i]])
        t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--size", choices=sorted(SIZES), default="mini")
    a = ap.parse_args()
    cli = os.path.join(ROOT, "build", "dalle-cli")
    if not os.access(cli, os.X_OK):
        sys.exit("build/dalle-cli is missing: run make first")
    enc, dec = build(a.size)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "pt"), os.path.join(tmp, "model")
        os.makedirs(src)
        save_min_dalle(enc, dec, src)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert.py"), "--from", "min-dalle",
                        "--src", src, "--vocab", os.path.join(ROOT, "models/tiny/vocab.json"),
                        "--merges", os.path.join(ROOT, "models/tiny/merges.txt"), "--dtype", "f16",
                        "--start-token", "16383", "--out", out], check=True, stdout=subprocess.DEVNULL)
        prompt = "a red bicycle leaning against a brick wall"
        tok = json.loads(subprocess.run([cli, "tokenize", "--model", out, "--prompt", prompt],
                                        check=True, capture_output=True, text=True).stdout)
        ids = [[0, 2] + [1] * 62, tok["ids"]]
        t0 = time.perf_counter()
        res = json.loads(subprocess.run([cli, "tokens", "--model", out, "--prompt", prompt, "-n", str(a.images),
                                         "--seed", "1", "--top-k", "50", "--cond-scale", "10",
                                         "--threads", str(a.threads)],
                                        check=True, capture_output=True, text=True).stdout)
        wall = (time.perf_counter() - t0) * 1e3
    ours_enc, ours_dec = res["timings_ms"]["encode"], res["timings_ms"]["decode"]
    md_enc, md_dec = time_min_dalle(enc, dec, ids, a.images, a.threads)
    print(f"BART {a.size}, {a.images} image(s), {a.threads} threads, CPU fp32 "
          f"(weights stored f16), torch {torch.__version__}")
    print(f"{'stage':<22}{'dalle-server ms':>16}{'min-dalle ms':>14}{'speed-up':>10}")
    print(f"{'encoder':<22}{ours_enc:>16.1f}{md_enc:>14.1f}{md_enc / ours_enc:>9.2f}x")
    print(f"{'decode 256 steps':<22}{ours_dec:>16.1f}{md_dec:>14.1f}{md_dec / ours_dec:>9.2f}x")
    print(f"{'per step':<22}{ours_dec / 256:>16.2f}{md_dec / 256:>14.2f}")
    print(f"(our whole CLI call incl. model load: {wall:.0f} ms)")


if __name__ == "__main__":
    main()
