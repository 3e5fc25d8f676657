#!/usr/bin/env python3
"""compare.py — bench/gpu's table: ours vs min-dalle on the same GPU, and both against the
H100 floor (below), from the JSON lines that
tools/gpu/gpu_bench --e2e and bench/gpu/min_dalle_gpu.py wrote.

usage: python3 bench/gpu/compare.py OURS.jsonl MIN_DALLE.jsonl [GPU_NAME]

Floor per generation of B images (bf16 weights and KV, H100 SXM at
3.0 TB/s and 800 TFLOP/s, cond + uncond sequences, nothing shared):
  decode step   = max(bytes / 3.0e12, FLOPs / 800e12) with
                  bytes = 2 B/param · params touched per step + 2B sequences · (self KV at the
                  average position 128.5 + cross KV over 64 positions),
                  FLOPs = 2B sequences · FLOPs per token (linear + attention);
  decode        = 256 steps; prompt = encoder + cross K/V FLOPs / 800e12;
  VQGAN         = 253 GFLOP per image / 800e12.
images/s floor = B / (prompt + decode + B · VQGAN); batch-1 latency floor = the B = 1 total
(mini ≈ 35 ms, Mega ≈ 219 ms, docs/performance-model.md §2 plus VQGAN). "of floor" = floor time / our
time (1.0 = at the physical limit); "vs min-dalle" = our images/s / min-dalle's.
"""
import json
import sys

HBM, FLOPS = 3.0e12, 800e12
SIZES = {  # d, layers, glu
    "mini": (1024, 12, 2730),
    "mega": (2048, 24, 4096),
}


def floor_ms(model, B):
    d, L, F = SIZES[model]
    params = L * (6 * d * d + 3 * d * F) + d * 16384      # per-step params (docs/performance-model.md §1)
    self_kv = 2 * d * 128.5 * L * 2                        # bytes per sequence per step, bf16
    cross_kv = 2 * d * 64 * L * 2
    flops_tok = 2 * params + L * 4 * d * 128.5 + L * 4 * d * 64
    seqs = 2 * B
    step = max((2 * params + seqs * (self_kv + cross_kv)) / HBM, seqs * flops_tok / FLOPS)
    enc_params = L * (4 * d * d + 3 * d * F)
    prompt = (2 * enc_params * 64 + 2 * L * 2 * d * d * 64) / FLOPS  # encoder + cross K/V, 64 tokens
    vq = 253e9 / FLOPS
    return 1e3 * (prompt + 256 * step + B * vq)


def load(path):
    rows = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    rows[(r["model"], r["batch"])] = r
    except FileNotFoundError:
        pass
    return rows


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    ours, peer = load(sys.argv[1]), load(sys.argv[2])
    gpu = sys.argv[3] if len(sys.argv) > 3 else "this GPU"
    if not ours:
        print("compare: no rows from gpu_bench --e2e")
        return 1
    some = next(iter(ours.values()))
    print("bench/gpu on %s — ours: weights %s, KV %s, CUDA graphs %s; min-dalle 0.4.11: torch fp16 "
          "(autocast), fp32 attention state, fp32 VQGAN" % (gpu, some["weights"], some["kv"],
                                                          "on" if some["graphs"] else "off"))
    print("random weights at each size, the same prompt, 256 tokens per image, guided top-k 256\n")
    print("| model | images | ours img/s | min-dalle img/s | ours ÷ min-dalle | floor img/s | ours of floor "
          "| min-dalle of floor |")
    print("|---|---|---|---|---|---|---|---|")
    for (model, B) in sorted(ours, key=lambda k: (k[0] != "mini", k[1])):
        o = ours[(model, B)]
        p = peer.get((model, B))
        fl = floor_ms(model, B)
        fl_ips = B / (fl / 1e3)
        pi = "%.2f" % p["images_per_s"] if p else "—"
        ratio = "%.1f×" % (o["images_per_s"] / p["images_per_s"]) if p else "—"
        pf = "%.3f" % (fl / p["total_ms"]) if p else "—"
        print("| %s | %d | %.2f | %s | %s | %.1f | %.3f | %s |" % (
            model, B, o["images_per_s"], pi, ratio, fl_ips, fl / o["total_ms"], pf))
    print("\nbatch-1 latency (prompt → 256 tokens → pixels; no CLIP, no JPEG)\n")
    print("| model | ours ms | (encode / decode / VQGAN) | min-dalle ms | min-dalle ÷ ours | floor ms | "
          "ours of floor | min-dalle of floor |")
    print("|---|---|---|---|---|---|---|---|")
    for model in ("mini", "mega"):
        o = ours.get((model, 1))
        if not o:
            continue
        p = peer.get((model, 1))
        fl = floor_ms(model, 1)
        print("| %s | %.1f | %.1f / %.1f / %.1f | %s | %s | %.1f | %.3f | %s |" % (
            model, o["total_ms"], o["encode_ms"], o["decode_ms"], o["vqgan_ms"],
            "%.1f" % p["total_ms"] if p else "—",
            "%.1f×" % (p["total_ms"] / o["total_ms"]) if p else "—", fl, fl / o["total_ms"],
            "%.3f" % (fl / p["total_ms"]) if p else "—"))
    steps = sorted({r["steps_timed"] for r in peer.values()})
    if steps:
        print("\nmin-dalle decode: mean step time over %s timed steps × 256 (its step cost does not "
              "depend on the position: it attends over the whole masked 256-slot state)" %
              "/".join(str(s) for s in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
