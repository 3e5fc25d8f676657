#!/usr/bin/env python3
"""cpu_e2e.py — end to end on the CPU at DALL·E mini size: dalle-server's engine against
min-dalle + transformers CLIP, on the same machine, in the same run.

Models (random weights, made here, never stored in the repository; --work DIR keeps them
between runs): min-dalle's own DalleBartEncoder / DalleBartDecoder (d 1024, 12+12 layers,
16 heads, GLU 2730, text vocab 50264, 16384 image codes) saved as fp16 state dicts like the
published encoder.pt / decoder.pt, min-dalle's VQGanDetokenizer saved as detoker.pt, and a
transformers CLIP ViT-B/32 saved fp16 with save_pretrained. tools/convert.py turns them into
our model directory (BART and CLIP f16, VQGAN f32, GroupNorm eps 1e-5 like min-dalle).

Runs, each in its own process (its peak RSS from wait4), interleaved (ours, peer, ours,
peer, … for every N, every repeat), same prompt, seed, top-k 256, condition scale 16,
temperature 1, the same thread count, OMP_WAIT_POLICY=passive for both:
  ours  build/dalle-cli generate -n N (its per-stage timings: text, encode, decode, vqgan,
        clip, jpeg; JPEG encoding included in ours, not in the peer's);
  peer  min-dalle's MinDalle(...).generate_images with grid_size √N (its download helper
        stubbed: the files are already in place; nothing else changed), its encoder,
        decoder steps and detokenizer timed by wrapping those three calls, then transformers
        CLIP ranking the N images (PIL bicubic resize to 224, image tower on the batch, text
        tower, logits, order);
  tokens build/dalle-cli tokens -n 1 and -n 8 (decode throughput).
Prints the median of the repeats per stage in seconds per image, the ratio (peer ÷ ours),
peak RSS, the machine's read bandwidth (our own two-thread AVX2 read loop, compiled here, best
of 5) and sgemm GFLOP/s (the best of torch.mm and numpy @ at 2048³, best of 5), the decode's
fraction of its floor (N = 1: 16-bit decoder weights read per step × 256 ÷ bandwidth;
N ≥ 8: decode FLOPs ÷ sgemm), and the load average before and after.

usage: PYTHON bench/cpu_e2e.py [--images 1,4,9] [--repeats 3] [--threads 2]
           [--cli build/dalle-cli] [--work DIR] [--json FILE]
PYTHON: a Python with the peer packages of tools/reference/requirements.txt (its README says
how to make that venv). Takes about 15 minutes at the defaults on a 2-core machine.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "a red bicycle leaning against a brick wall"
SEED = 7
TOP_K, COND_SCALE = 256, 16
MINI = dict(layers=12, d=1024, heads=16, glu=2730, text_vocab=50264, image_vocab=16384)
CLIP_B32 = {"embed_dim": 512, "layer_norm_eps": 1e-5, "logit_scale_from_weights": True,
            "vision": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12,
                       "mlp_dim": 3072},
            "text": {"context_length": 77, "vocab_size": 49408, "width": 512, "layers": 12, "heads": 8,
                     "mlp_dim": 2048}}
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
BIAS_ONLY = ("pre_self_attn_layer_norm", "pre_encoder_attn_layer_norm", "glu.ln0", "glu.ln1", "final_ln")

READ_LOOP_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
__attribute__((target("avx2"))) int main(void) {
    const size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = aligned_alloc(64, n * sizeof *a);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = 1.0f;
    double best = 1e30; float total = 0;
    for (int r = 0; r < 5; r++) {
        const double t0 = now();
        float tot = 0;
        #pragma omp parallel reduction(+ : tot)
        {
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            #pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 32) {
                s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
                s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
                s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
                s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
            }
            float b[8];
            _mm256_storeu_ps(b, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
            for (int j = 0; j < 8; j++) tot += b[j];
        }
        const double s = now() - t0;
        if (s < best) best = s;
        total += tot;
    }
    printf("%.3f %g\n", n * sizeof(float) / best / 1e9, total);
    return 0;
}
"""


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def child_env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="passive")
    return env


def spawn(argv, threads):
    """Runs a child and measures its peak RSS with wait4 (the child is reaped here)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(threads),
                         text=True)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"{' '.join(argv[:3])} failed ({p.returncode}):\n{err[-3000:]}")
    return out, ru.ru_maxrss / 1024.0


# ---- models ----------------------------------------------------------------------------

def build_models(work):
    """min-dalle files under work/min-dalle, CLIP under work/clip, ours under work/ours."""
    stamp = os.path.join(work, "built")
    if os.path.exists(stamp):
        return
    import torch
    from min_dalle.models import DalleBartDecoder, DalleBartEncoder, VQGanDetokenizer
    from transformers import CLIPModel
    sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
    from make_tiny_clip import clip_config

    torch.manual_seed(0)
    md = os.path.join(work, "min-dalle")
    bart_dir, vq_dir = os.path.join(md, "dalle_bart_mini"), os.path.join(md, "vqgan")
    os.makedirs(bart_dir, exist_ok=True)
    os.makedirs(vq_dir, exist_ok=True)
    s = MINI
    enc = DalleBartEncoder(layer_count=s["layers"], embed_count=s["d"], attention_head_count=s["heads"],
                           text_vocab_count=s["text_vocab"], text_token_count=64, glu_embed_count=s["glu"],
                           device="cpu").eval()
    dec = DalleBartDecoder(image_vocab_count=s["image_vocab"], embed_count=s["d"],
                           attention_head_count=s["heads"], glu_embed_count=s["glu"],
                           layer_count=s["layers"], device="cpu").eval()
    with torch.no_grad():
        for m in (enc, dec):
            for _, p in m.named_parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.02)
    for m, name in ((enc, "encoder.pt"), (dec, "decoder.pt")):  # published: fp16, no bias-only weights
        state = {k: v.half() for k, v in m.state_dict().items()
                 if not (k.endswith(".weight") and any(b in k for b in BIAS_ONLY))}
        torch.save(state, os.path.join(bart_dir, name))
    shutil.copyfile(os.path.join(ROOT, "models/tiny/vocab.json"), os.path.join(bart_dir, "vocab.json"))
    shutil.copyfile(os.path.join(ROOT, "models/tiny/merges.txt"), os.path.join(bart_dir, "merges.txt"))
    detok = VQGanDetokenizer().eval()
    torch.save(detok.state_dict(), os.path.join(vq_dir, "detoker.pt"))
    clip = CLIPModel(clip_config(CLIP_B32)).eval()
    clip_dir = os.path.join(work, "clip")
    clip.half().save_pretrained(clip_dir)
    shutil.copyfile(os.path.join(ROOT, "models/tiny/clip_merges.txt"), os.path.join(clip_dir, "merges.txt"))
    ours = os.path.join(work, "ours")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert.py"), "--from", "min-dalle",
                    "--src", bart_dir, "--dtype", "f16", "--defaults", "min-dalle",
                    "--vqgan", os.path.join(vq_dir, "detoker.pt"), "--vqgan-eps", "1e-5",
                    "--clip", clip_dir, "--out", ours, "--fresh"], check=True, stdout=subprocess.DEVNULL)
    open(stamp, "w").close()


# ---- machine floors --------------------------------------------------------------------

def read_bandwidth(threads, tmp):
    src, exe = os.path.join(tmp, "read.c"), os.path.join(tmp, "read")
    with open(src, "w") as f:
        f.write(READ_LOOP_C)
    subprocess.run(["cc", "-O2", "-fopenmp", src, "-o", exe], check=True)
    out, _ = spawn([exe], threads)
    return float(out.split()[0])


def sgemm_child(threads):
    import torch
    torch.set_num_threads(threads)
    n, best = 2048, {}
    x, y = torch.randn(n, n), torch.randn(n, n)
    xn, yn = x.numpy(), y.numpy()
    for name, fn in (("torch.mm", lambda: torch.mm(x, y)), ("numpy @", lambda: xn @ yn)):
        fn()
        t = min(timed(fn) for _ in range(5))
        best[name] = 2 * n ** 3 / t / 1e9
    name = max(best, key=best.get)
    print(json.dumps([best[name], name]))


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- one run of each side ----------------------------------------------------------------

def run_ours(cli, model, n, threads, tmp):
    out_dir = os.path.join(tmp, f"ours-{n}")
    out, rss = spawn([cli, "generate", "--model", model, "--prompt", PROMPT, "-n", str(n), "--seed", str(SEED),
                      "--top-k", str(TOP_K), "--cond-scale", str(COND_SCALE), "--threads", str(threads),
                      "--out", out_dir], threads)
    res = json.loads(out)
    t = {k: v / 1e3 for k, v in res["timings_ms"].items()}
    return {"encode": t["encode"], "decode": t["decode"], "vqgan": t["vqgan"], "clip": t["clip"],
            "total": t["total"], "rss": rss,
            "kernels": res.get("engine", {}).get("kernels", "(not reported)"),
            "weight_bytes": res.get("engine", {}).get("weight_bytes", 0)}


def run_tokens(cli, model, n, threads):
    out, _ = spawn([cli, "tokens", "--model", model, "--prompt", PROMPT, "-n", str(n), "--seed", str(SEED),
                    "--top-k", str(TOP_K), "--cond-scale", str(COND_SCALE), "--threads", str(threads)], threads)
    return json.loads(out)["timings_ms"]["decode"] / 1e3


def run_peer(work, n, threads, clip_ids):
    out, rss = spawn([sys.executable, os.path.abspath(__file__), "--peer-child", work, str(n), str(threads),
                      json.dumps(clip_ids)], threads)
    t = json.loads(out.strip().splitlines()[-1])
    t["rss"] = rss
    return t


def peer_child(work, n, threads, clip_ids):
    """In a child process: min-dalle's generate_images + transformers CLIP ranking."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPModel
    import min_dalle.min_dalle as mdm

    class Pinged:
        content = b""

    def no_download(url, *a, **k):  # min-dalle pings config.json on start; files are in place
        if not url.endswith("config.json"):
            raise RuntimeError(f"min-dalle tried to download {url}")
        return Pinged()
    mdm.requests.get = no_download
    torch.set_num_threads(threads)
    md = mdm.MinDalle(models_root=os.path.join(work, "min-dalle"), dtype=torch.float32, device="cpu",
                      is_mega=False, is_reusable=True, is_verbose=False)
    clip = CLIPModel.from_pretrained(os.path.join(work, "clip"), torch_dtype=torch.float32).eval()
    t = {"encode": 0.0, "decode": 0.0, "vqgan": 0.0}

    def wrap(obj, attr, key):
        f = getattr(obj, attr)

        def w(*a, **k):
            t0 = time.perf_counter()
            r = f(*a, **k)
            t[key] += time.perf_counter() - t0
            return r
        setattr(obj, attr, w)
    wrap(md.encoder, "forward", "encode")
    wrap(md.decoder, "sample_tokens", "decode")
    wrap(md.detokenizer, "forward", "vqgan")
    grid = int(round(math.sqrt(n)))
    t0 = time.perf_counter()
    images = md.generate_images(text=PROMPT, seed=SEED, grid_size=grid, top_k=TOP_K,
                                supercondition_factor=COND_SCALE, temperature=1)
    t_md = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        pixels = images.to(torch.uint8).cpu().numpy()
        mean, std = np.array(MEAN, np.float32), np.array(STD, np.float32)
        batch = np.stack([(np.asarray(Image.fromarray(p).resize((224, 224), Image.BICUBIC), np.float32) / 255
                           - mean) / std for p in pixels])
        ie = clip.get_image_features(pixel_values=torch.from_numpy(batch).permute(0, 3, 1, 2))
        te = clip.get_text_features(input_ids=torch.tensor([clip_ids]))
        ie = getattr(ie, "pooler_output", ie)
        te = getattr(te, "pooler_output", te)
        logits = clip.logit_scale.exp() * torch.nn.functional.normalize(ie, dim=-1) @ \
            torch.nn.functional.normalize(te, dim=-1).T
        torch.argsort(logits[:, 0], descending=True)
    t["clip"] = time.perf_counter() - t0
    t["total"] = t_md + t["clip"]
    print(json.dumps(t))


# ---- report ------------------------------------------------------------------------------

def decoder_params_per_step():
    """Weights a decode step reads: per layer self q,k,v,o + cross q,o + GLU, and lm_head
    restricted to the 16384 image codes (cross K/V are computed once per prompt)."""
    d, g, L = MINI["d"], MINI["glu"], MINI["layers"]
    return L * (6 * d * d + 3 * d * g) + MINI["image_vocab"] * d


def report(a, ns, runs, tokens, bw, gf, gf_name, load_before, load_after):
    med = statistics.median
    sides = ["base", "ours"] if runs[ns[0]]["base"] else ["ours"]
    name = {"base": "before", "ours": "ours"}
    kernels = runs[ns[0]]["ours"][0]["kernels"]
    print(f"dalle-server vs min-dalle 0.4.11 + transformers CLIP B/32, DALL·E mini size, random weights; "
          f"{a.threads} threads each, OMP_WAIT_POLICY=passive; median of {a.repeats} interleaved repeats")
    print(f"machine: read bandwidth {bw:.1f} GB/s, sgemm {gf:.0f} GFLOP/s ({gf_name}); our GEMM variant: "
          f"{kernels}; load average {load_before} before, {load_after} after")
    if "base" in sides:
        print(f"before = {a.baseline_cli} (the same run, interleaved)")
    print("seconds per image; ×: peer ÷ that side (the encoder also per text row: ours encodes the "
          "prompt, min-dalle the prompt and the empty text); peak RSS: that side ÷ peer")
    cols = [(s, True) for s in sides] + [("peer", False)]
    width = sum(16 if r else 9 for _, r in cols)
    print(f"{'stage':<22}" + "".join(f"{'N=' + str(n):>{width}}" for n in ns))
    print(f"{'':<22}" + "".join("".join(f"{name.get(s, s):>9}{'×':>7}" if r else f"{s:>9}" for s, r in cols)
                                 for _ in ns))
    per_row = {"peer": 2}
    rows = [("encoder", "encode", 1), ("encoder per text row", "encode", 0), ("decode (256 steps)", "decode", 1),
            ("VQGAN", "vqgan", 1), ("CLIP ranking", "clip", 1), ("end to end", "total", 1),
            ("peak RSS (MB)", "rss", 0)]
    for label, k, per_image in rows:
        line = f"{label:<22}"
        for n in ns:
            def val(side):
                v = med([x[k] for x in runs[n][side]])
                if k == "rss":
                    return v
                return v / n if per_image else v / per_row.get(side, 1)
            p = val("peer")
            for s, r in cols:
                v = val(s)
                if not r:
                    line += f"{v:>9.0f}" if k == "rss" else f"{v:>9.3f}"
                elif k == "rss":
                    line += f"{v:>9.0f}{v / p:>6.2f}x"
                else:
                    line += f"{v:>9.3f}{p / v:>6.2f}x"
        print(line)
    wb = runs[ns[0]]["ours"][0]["weight_bytes"]
    if wb:
        print(f"our weights in memory: {wb / 1e6:.0f} MB")
    step_bytes = 2 * decoder_params_per_step()
    for side in sides:
        for n in ns:
            dec = med([x["decode"] for x in runs[n][side]])
            bw_floor = step_bytes * 256 / (bw * 1e9)
            fl_floor = 2 * (2 * n) * decoder_params_per_step() * 256 / (gf * 1e9)
            floor, what = max((bw_floor, "bandwidth"), (fl_floor, "FLOP"))
            print(f"{name[side]}: decode N={n}: {dec:.2f} s; floors: bandwidth {bw_floor:.2f} s "
                  f"({step_bytes / 1e6:.0f} MB of 16-bit weights per step), FLOP {fl_floor:.2f} s; "
                  f"at {100 * floor / dec:.0f} % of the {what} floor")
    for side in sides:
        t1, t8 = med(tokens[side][1]), med(tokens[side][8])
        print(f"{name[side]}: dalle-cli tokens: N=1 {1 / t1:.3f} images/s, N=8 {8 / t8:.3f} images/s → "
              f"×{(8 / t8) / (1 / t1):.2f}; N=8 decode at "
              f"{100 * (2 * 16 * decoder_params_per_step() * 256) / (gf * 1e9) / t8:.0f} % of the FLOP floor")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="1,4,9", help="image counts (perfect squares: min-dalle's grid)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "dalle-cli"))
    ap.add_argument("--baseline-cli", help="another build's dalle-cli (e.g. an earlier commit), run as a "
                    "third side in the same interleaved loop")
    ap.add_argument("--work", help="folder for the random models, kept between runs (default: temporary)")
    ap.add_argument("--json", help="also write the raw runs here")
    ap.add_argument("--peer-child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--build-child", help=argparse.SUPPRESS)
    ap.add_argument("--sgemm-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_child:
        w, n, th, ids = a.peer_child
        return peer_child(w, int(n), int(th), json.loads(ids))
    if a.build_child:
        return build_models(a.build_child)
    if a.sgemm_child:
        return sgemm_child(a.sgemm_child)
    for cli in filter(None, (a.cli, a.baseline_cli)):
        if not os.access(cli, os.X_OK):
            sys.exit(f"{cli} is missing: run make first")
    ns = [int(x) for x in a.images.split(",")]
    for n in ns:
        if int(round(math.sqrt(n))) ** 2 != n:
            sys.exit(f"--images {n}: min-dalle makes grid_size² images, use perfect squares")
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or os.path.join(tmp, "models")
        os.makedirs(work, exist_ok=True)
        # torch lives in children only: a child's peak RSS includes what it inherited
        subprocess.run([sys.executable, os.path.abspath(__file__), "--build-child", work], check=True)
        model = os.path.join(work, "ours")
        tok = json.loads(subprocess.run([a.cli, "tokenize", "--model", model, "--prompt", PROMPT],
                                        check=True, capture_output=True, text=True).stdout)
        bw = read_bandwidth(a.threads, tmp)
        gf, gf_name = json.loads(spawn([sys.executable, os.path.abspath(__file__), "--sgemm-child",
                                        str(a.threads)], a.threads)[0])
        clis = {"ours": a.cli, "base": a.baseline_cli}
        sides = ["ours", "peer"] + (["base"] if a.baseline_cli else [])
        runs = {n: {"ours": [], "peer": [], "base": []} for n in ns}
        tokens = {s: {1: [], 8: []} for s in ("ours", "base")}
        for r in range(a.repeats):
            for n in ns:
                for side in sides if r % 2 == 0 else sides[::-1]:
                    res = run_peer(work, n, a.threads, tok["clip_ids"]) if side == "peer" else \
                        run_ours(clis[side], model, n, a.threads, tmp)
                    runs[n][side].append(res)
                    print(f"  repeat {r + 1} N={n} {side}: total {res['total']:.2f} s, decode "
                          f"{res['decode']:.2f} s, rss {res['rss']:.0f} MB", file=sys.stderr)
            for side in ("ours", "base") if a.baseline_cli else ("ours",):
                for n in (1, 8):
                    tokens[side][n].append(run_tokens(clis[side], model, n, a.threads))
    load_after = load_average()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "tokens": tokens, "bandwidth_gbs": bw, "sgemm_gflops": gf,
                       "load": [load_before, load_after]}, f, indent=1)
    report(a, ns, runs, tokens, bw, gf, gf_name, load_before, load_after)


if __name__ == "__main__":
    main()
