#!/usr/bin/env python3
"""min_dalle_gpu.py — the peer side of bench/gpu: min-dalle 0.4.11 (PyTorch, fp16, CUDA) with
random weights at DALL·E mini and Mega sizes, built on the GPU machine (nothing stored or
downloaded), run the way MinDalle.generate_raw_image_stream runs it:
  * encoder on [uncond, cond] token rows under autocast(fp16), models cast .to(float16);
  * 256 decoder steps of DalleBartDecoder.sample_tokens (top-k 256, supercondition 16,
    temperature 1) with min-dalle's fp32 attention state of [layers, 4·B, 256, d];
  * VQGanDetokenizer (fp32, as min-dalle keeps it) on the B code grids (its forward without
    the square-grid tiling, so that any B works).
Each (size, batch) times the encoder once, then decode steps until --budget-s seconds have
passed (at least --min-steps after 2 warm-up steps, at most 256): min-dalle attends over
the whole 256-position state with a mask at every step, so its step time does not depend on
the position and the mean step time × 256 is its decode time (steps_timed says how many
were timed). One JSON line per (size, batch) appended to --out.

usage: python3 bench/gpu/min_dalle_gpu.py --out FILE [--sizes mini,mega] [--batches 1,8,32,64]
       [--budget-s 6] [--min-steps 8]
min-dalle's package must be importable (bench/gpu/run.sh puts the bundled copy on
PYTHONPATH); the imports its package pulls in that this script never uses (emoji, requests,
numpy, PIL) are stubbed when missing.
"""
import argparse
import json
import sys
import time
import types


def stub_missing(name, **attrs):
    try:
        __import__(name)
    except ImportError:
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        sys.modules[name] = m


stub_missing("emoji", demojize=lambda s, **k: s)
stub_missing("requests", get=None)
stub_missing("PIL", Image=types.ModuleType("PIL.Image"))  # min_dalle.py imports it; unused here

import torch  # noqa: E402

stub_missing("numpy")  # after torch, which handles a missing numpy itself
from min_dalle.models import DalleBartDecoder, DalleBartEncoder, VQGanDetokenizer  # noqa: E402

SIZES = {  # min_dalle.py MinDalle.__init__
    "mini": dict(layers=12, heads=16, d=1024, glu=2730, text_vocab=50264, image_vocab=16384),
    "mega": dict(layers=24, heads=32, d=2048, glu=4096, text_vocab=50272, image_vocab=16415),
    "tiny": dict(layers=2, heads=4, d=64, glu=96, text_vocab=3999, image_vocab=16384),  # --device cpu dry run
}


def build(size, dev):
    s = SIZES[size]
    dt = torch.float16 if dev == "cuda" else torch.float32  # CPU dry run: no autocast there
    torch.manual_seed(0)
    with torch.device(dev):  # parameters made on the GPU (PyTorch's CPU init of Mega takes long)
        return build_on(s, dev, dt)


def build_on(s, dev, dt):
    enc = DalleBartEncoder(layer_count=s["layers"], embed_count=s["d"], attention_head_count=s["heads"],
                           text_vocab_count=s["text_vocab"], text_token_count=64, glu_embed_count=s["glu"],
                           device=dev).to(dt).eval().to(dev)
    dec = DalleBartDecoder(image_vocab_count=s["image_vocab"], embed_count=s["d"],
                           attention_head_count=s["heads"], glu_embed_count=s["glu"], layer_count=s["layers"],
                           device=dev).to(dt).eval().to(dev)
    with torch.no_grad():
        for m in (enc, dec):
            for p in m.parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.02)
    return enc, dec


def time_one(enc, dec, det, s, B, budget_s, min_steps, dev):
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    d = s["d"]
    with torch.no_grad():
        tokens = torch.ones((2, 64), dtype=torch.long, device=dev)
        tokens[0, :2] = torch.tensor([0, 2])
        tokens[1, :12] = torch.arange(100, 100 + 12 * 37, 37)
        sync()
        t0 = time.perf_counter()
        with torch.cuda.amp.autocast(dtype=torch.float16):
            enc_state = enc.forward(tokens)
        sync()
        enc_ms = (time.perf_counter() - t0) * 1e3
        with torch.cuda.amp.autocast(dtype=torch.float16):
            idx = [0] * B + [1] * B
            text = tokens[idx]
            enc_state = enc_state[idx]
            mask = text.not_equal(1)[:, None, None, :]
            att = torch.zeros(size=(s["layers"], B * 4, 256, d), device=dev)
            image_tokens = torch.full((B, 257), 2 ** 14 - 1, dtype=torch.long, device=dev)
        torch.manual_seed(1)
        ti = torch.arange(256, device=dev)
        settings = torch.tensor([1.0, 256, 16.0], dtype=torch.float32, device=dev)
        steps, t_start, t_dec = 0, None, 0.0
        for i in range(256):
            if i == 2:
                sync()
                t_start = time.perf_counter()
            with torch.cuda.amp.autocast(dtype=torch.float16):
                image_tokens[:, i + 1], att = dec.sample_tokens(
                    settings=settings, attention_mask=mask, encoder_state=enc_state, attention_state=att,
                    prev_tokens=image_tokens[:, [i]], token_index=ti[[i]])
            if i >= 2:
                steps += 1
                if steps >= min_steps and steps % 4 == 0:
                    sync()
                    if time.perf_counter() - t_start > budget_s:
                        break
        sync()
        t_dec = (time.perf_counter() - t_start) * 1e3
        dec_ms = t_dec / steps * 256
        codes = image_tokens[:, 1:].clamp(0, 2 ** 14 - 1)
        sync()
        t0 = time.perf_counter()
        with torch.cuda.amp.autocast(dtype=torch.float32):
            # VQGanDetokenizer.forward minus its grid tiling (it takes square counts only)
            z = det.embedding.forward(codes).view((B, 2 ** 4, 2 ** 4, 2 ** 8))
            z = det.post_quant_conv.forward(z.permute(0, 3, 1, 2).contiguous())
            img = (det.decoder.forward(z).permute(0, 2, 3, 1).clip(0.0, 1.0) * 255).to(torch.uint8)
        sync()
        vq_ms = (time.perf_counter() - t0) * 1e3
        del img, att
    return enc_ms, dec_ms, vq_ms, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="mini,mega")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--budget-s", type=float, default=6.0)
    ap.add_argument("--min-steps", type=int, default=8)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script (use --sizes tiny)")
    a = ap.parse_args()
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("min_dalle_gpu: skipped: no CUDA device for torch")
        return 2
    print("min_dalle_gpu: torch %s on %s" % (torch.__version__,
                                            torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"))
    with torch.device(dev):
        det = VQGanDetokenizer().eval().to(dev)  # fp32, random (default init)
    batches = [int(b) for b in a.batches.split(",") if b]
    with open(a.out, "a") as f:
        for size in [x for x in a.sizes.split(",") if x]:
            s = SIZES[size]
            enc, dec = build(size, dev)
            for B in batches:
                try:
                    enc_ms, dec_ms, vq_ms, steps = time_one(enc, dec, det, s, B, a.budget_s, a.min_steps, dev)
                except torch.cuda.OutOfMemoryError as e:
                    print("min_dalle_gpu: %s batch %d: out of memory (%s)" % (size, B, str(e)[:80]))
                    torch.cuda.empty_cache()
                    continue
                total = enc_ms + dec_ms + vq_ms
                row = dict(impl="min-dalle", model=size, batch=B, weights="F16" if dev == "cuda" else "F32", kv="F32", graphs=0,
                           steps_timed=steps, encode_ms=round(enc_ms, 3), decode_ms=round(dec_ms, 3),
                           vqgan_ms=round(vq_ms, 3), total_ms=round(total, 3),
                           images_per_s=round(B / (total / 1e3), 4))
                print("| min-dalle | %s | %d | encode %.1f ms | decode %.1f ms (%d steps timed) | vqgan %.1f ms | "
                      "%.3f images/s |" % (size, B, enc_ms, dec_ms, steps, vq_ms, row["images_per_s"]), flush=True)
                f.write(json.dumps(row) + "\n")
                f.flush()
            del enc, dec
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
