#!/usr/bin/env python3
"""same_output.py — do two builds give the same seeded output, byte for byte?

For a change that promises "the same seed gives the same bytes" (a refactor of the pipeline,
a faster kernel with the same arithmetic): runs checkout A's and checkout B's binaries on
their models/demo and models/tiny for a few prompts and seeds, and compares
  * `dalle-cli tokens`: the image codes,
  * `dalle-cli generate -n 3`: every JPEG file and the scores and order in result.json,
  * `dalle-server` (POST /generate, n = 3): the base64 images, scores and indices.
Prints one line per comparison and exits 1 if anything differs. Python 3 standard library only.

    tools/same_output.py A B [--prompts P ...] [--seeds S ...] [--models demo tiny]

A and B are checkouts with build/dalle-cli and build/dalle-server (e.g. two `git worktree`s
built with `make NVCC= build/dalle-cli build/dalle-server`).
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile
import urllib.request

PROMPTS = ["a red square on a blue background",
           "two green circles side by side on a white background",
           "a purple triangle on a white background"]


def digest(b):
    return hashlib.sha256(b).hexdigest()[:16]


def cli(repo, *args):
    return subprocess.run([str(repo / "build" / "dalle-cli"), *args], capture_output=True, check=True,
                          timeout=600).stdout


def cli_tokens(repo, model, prompt, seed):
    out = cli(repo, "tokens", "--model", str(model), "--prompt", prompt, "-n", "2", "--seed", str(seed))
    return digest(json.dumps(json.loads(out)["tokens"]).encode())


def cli_generate(repo, model, prompt, seed):
    with tempfile.TemporaryDirectory() as out:
        cli(repo, "generate", "--model", str(model), "--prompt", prompt, "-n", "3", "--seed", str(seed),
            "--out", out)
        res = json.loads((pathlib.Path(out) / "result.json").read_text())
        files = sorted(p.name for p in pathlib.Path(out).glob("*.jpg"))
        jpegs = [digest((pathlib.Path(out) / f).read_bytes()) for f in files]
    images = res.get("images", [])
    return {"jpegs": jpegs, "scores": [i.get("score") for i in images],
            "indices": [i.get("index") for i in images]}


class Server:
    def __init__(self, repo, model):
        self.proc = subprocess.Popen([str(repo / "build" / "dalle-server"), "--model", str(model),
                                      "--port", "0", "--max-batch", "4"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.url = "http://" + line.split()[2]
                break
        else:
            raise RuntimeError(f"{repo}: dalle-server did not start")
        for line in self.proc.stdout:
            if line.startswith("ready"):
                break

    def generate(self, prompt, seed):
        body = json.dumps({"prompt": prompt, "n": 3, "seed": seed}).encode()
        req = urllib.request.Request(self.url + "/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            j = json.loads(r.read())
        return {"images": [digest(i.encode()) for i in j["images"]], "scores": j["scores"],
                "indices": j["indices"]}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=pathlib.Path)
    ap.add_argument("b", type=pathlib.Path)
    ap.add_argument("--prompts", nargs="+", default=PROMPTS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 7, 42])
    ap.add_argument("--models", nargs="+", default=["demo", "tiny"])
    args = ap.parse_args()
    differ = 0

    def same(what, x, y):
        nonlocal differ
        ok = x == y
        differ += not ok
        print(f"{'same' if ok else 'DIFFERENT'}  {what}" + ("" if ok else f"\n  A {x}\n  B {y}"))

    for name in args.models:
        ma, mb = args.a / "models" / name, args.b / "models" / name
        for p in args.prompts:
            for s in args.seeds:
                same(f"{name} tokens   seed {s:>3} {p!r}", cli_tokens(args.a, ma, p, s),
                     cli_tokens(args.b, mb, p, s))
                same(f"{name} generate seed {s:>3} {p!r}", cli_generate(args.a, ma, p, s),
                     cli_generate(args.b, mb, p, s))
        sa, sb = Server(args.a, ma), Server(args.b, mb)
        try:
            for p in args.prompts:
                for s in args.seeds:
                    same(f"{name} server   seed {s:>3} {p!r}", sa.generate(p, s), sb.generate(p, s))
        finally:
            sa.stop()
            sb.stop()
    print(f"{differ} of the comparisons differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
