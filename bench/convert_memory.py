#!/usr/bin/env python3
"""convert_memory.py — peak memory of tools/convert.py on a DALL·E Mega-sized checkpoint.

Writes a random checkpoint with the published Mega shapes (d_model 2048, 24+24
layers, GLU 4096, text vocab 50272, lm_head 16416; 2.59 B parameters, fp16 like the published
files, ≈5.2 GB) into a temporary directory, in min-dalle's format (encoder.pt + decoder.pt,
torch.save zip layout) and/or dalle-mini's Flax format (flax_model.msgpack, scanned layers,
[in, out] kernels), converts it with tools/convert.py in a child process and prints that child's
peak resident set (ru_maxrss from wait4) and the time. Needs ≈11 GB of free disk per format under TMPDIR;
the files are deleted afterwards. Not part of CI.

    python3 bench/convert_memory.py [--format min-dalle|flax|both] [--dtype f16|f32|bf16] [--keep]
"""
import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from convert.bart import PRESETS, expected_keys  # noqa: E402

HP = dict(PRESETS["mega"])
RNG = np.random.default_rng(0)
BLOCK = (RNG.standard_normal(1 << 20) * 0.02).astype(np.float16)  # tiled: random enough, fast


def fill(shape):
    n = int(np.prod(shape))
    return np.resize(BLOCK, n).reshape(shape)


def rss_note(tag):
    return f"{tag}: ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"


# ---- min-dalle (torch.save zip) written one tensor at a time ----------------------------------

def _u(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n):
    return b"J" + struct.pack("<i", n)


def write_pt(path, shapes):
    pkl = bytearray(b"\x80\x02}(")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for i, (k, shape) in enumerate(shapes.items()):
            stride, acc = [], 1
            for s in reversed(shape):
                stride.append(acc)
                acc *= s
            stride.reverse()
            n = int(np.prod(shape))
            pid = b"(" + _u("storage") + b"ctorch\nHalfStorage\n" + _u(str(i)) + _u("cpu") + _i(n) + b"tQ"
            pkl += _u(k) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _i(0)
            pkl += b"(" + b"".join(_i(s) for s in shape) + b"t(" + b"".join(_i(s) for s in stride) + b"t"
            pkl += b"\x89ccollections\nOrderedDict\n)RtR"
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as f:
                f.write(fill(shape).tobytes())
        pkl += b"u."
        z.writestr("archive/data.pkl", bytes(pkl))
        z.writestr("archive/version", "3\n")


def make_min_dalle(d):
    for which in ("encoder", "decoder"):
        write_pt(os.path.join(d, f"{which}.pt"), expected_keys(HP, which))


# ---- dalle-mini flax msgpack, streamed ----------------------------------------------------------

def _str(s):
    b = s.encode()
    return b"\xdb" + struct.pack(">I", len(b)) + b


def _map(n):
    return b"\xdf" + struct.pack(">I", n)


def _ext_array(f, shape):
    a = fill(shape)
    body = bytearray(b"\xdd" + struct.pack(">I", 3))
    body += b"\xdd" + struct.pack(">I", len(shape)) + b"".join(b"\xd3" + struct.pack(">q", s) for s in shape)
    body += _str("float16") + b"\xc6" + struct.pack(">I", a.nbytes)
    f.write(b"\xc9" + struct.pack(">I", len(body) + a.nbytes) + b"\x01" + bytes(body))
    f.write(a.tobytes())


def flax_tree_shapes():
    d, F, L = HP["d_model"], HP["glu_dim"], None

    def layer(n, cross):
        t = {"LayerNorm_0": {"bias": (n, d)}, "LayerNorm_1": {"scale": (n, d), "bias": (n, d)},
             "FlaxBartAttention_0": {w: {"kernel": (n, d, d)} for w in ("q_proj", "k_proj", "v_proj", "out_proj")},
             "GLU_0": {"LayerNorm_0": {"bias": (n, d)}, "LayerNorm_1": {"bias": (n, F)},
                       "Dense_0": {"kernel": (n, d, F)}, "Dense_1": {"kernel": (n, d, F)},
                       "Dense_2": {"kernel": (n, F, d)}}}
        if cross:
            t["LayerNorm_2"] = {"bias": (n, d)}
            t["LayerNorm_3"] = {"scale": (n, d), "bias": (n, d)}
            t["FlaxBartAttention_1"] = {w: {"kernel": (n, d, d)} for w in ("q_proj", "k_proj", "v_proj", "out_proj")}
        return t
    del L
    enc = {"embed_tokens": {"embedding": (HP["text_vocab_size"], d)},
           "embed_positions": {"embedding": (HP["text_length"], d)},
           "layernorm_embedding": {"scale": (d,), "bias": (d,)}, "final_ln": {"bias": (d,)},
           "layers": {"FlaxBartEncoderLayers": layer(HP["encoder_layers"], False)}}
    dec = {"embed_tokens": {"embedding": (HP["lm_head_size"], d)},
           "embed_positions": {"embedding": (HP["image_length"], d)},
           "layernorm_embedding": {"scale": (d,), "bias": (d,)}, "final_ln": {"bias": (d,)},
           "layers": {"FlaxBartDecoderLayers": layer(HP["decoder_layers"], True)}}
    return {"model": {"encoder": enc, "decoder": dec}, "lm_head": {"kernel": (d, HP["lm_head_size"])}}


def write_flax(f, tree):
    f.write(_map(len(tree)))
    for k, v in tree.items():
        f.write(_str(k))
        if isinstance(v, dict):
            write_flax(f, v)
        else:
            _ext_array(f, v)


def make_flax(d):
    with open(os.path.join(d, "flax_model.msgpack"), "wb") as f:
        write_flax(f, flax_tree_shapes())
    cfg = {"d_model": 2048, "encoder_layers": 24, "decoder_layers": 24, "encoder_attention_heads": 32,
           "decoder_attention_heads": 32, "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096,
           "encoder_vocab_size": 50272, "image_vocab_size": 16415, "image_length": 256,
           "max_text_length": 64, "decoder_start_token_id": 16384}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)


def vocab(d):
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4}, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")


def run(fmt, dtype, tmp):
    src = os.path.join(tmp, f"src-{fmt}")
    out = os.path.join(tmp, f"out-{fmt}")
    os.makedirs(src)
    t0 = time.time()
    (make_min_dalle if fmt == "min-dalle" else make_flax)(src)
    vocab(src)
    size = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
    print(f"{fmt}: wrote a Mega-sized random checkpoint, {size / 1e9:.2f} GB in {time.time() - t0:.0f} s "
          f"({rss_note('generator')})", flush=True)
    cmd = [sys.executable, os.path.join(ROOT, "tools", "convert.py"), "--from", fmt, "--src", src,
           "--mega", "--dtype", dtype, "--out", out]
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        p = subprocess.Popen(cmd, stdout=so, stderr=se, text=True)
        _, status, ru = os.wait4(p.pid, 0)  # this child's own rusage
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.time() - t0
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    peak = ru.ru_maxrss  # KiB on Linux
    if p.returncode:
        sys.exit(f"convert.py failed:\n{stderr}")
    osize = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(stdout.strip())
    print(f"{fmt} → {dtype}: peak RSS of the converter {peak / 1024:.0f} MiB, {secs:.0f} s, "
          f"output {osize / 1e9:.2f} GB", flush=True)
    print("command: " + " ".join(cmd))
    shutil.rmtree(src)
    shutil.rmtree(out)
    return peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--format", choices=["min-dalle", "flax", "both"], default="both")
    ap.add_argument("--dtype", choices=["f16", "f32", "bf16"], default="f16")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="convert-mem-")
    try:
        fmts = ["min-dalle", "flax"] if args.format == "both" else [args.format]
        for fmt in fmts:
            run(fmt, args.dtype, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
