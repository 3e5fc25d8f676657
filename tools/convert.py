#!/usr/bin/env python3
"""convert.py — checkpoint converter: min-dalle torch state dicts → a dalle-server model directory.

    python3 tools/convert.py --from min-dalle --src DIR --vocab vocab.json --merges merges.txt \
        [--mini | --mega | --hparams auto] [--heads N] [--start-token T] --dtype f16|f32 \
        [--clip-merges PATH] [--wiki-words PATH] [--name NAME] [--fresh] --out MODEL_DIR

Input (--from min-dalle): DIR holds encoder.pt + decoder.pt (Mega names) or encoder_mini.pt +
decoder_mini.pt (mini names), torch.save'd flat dicts of tensors with min-dalle's key names
(model-spec §7.2; lm_head under the decoder as lm_head.weight).

Output: MODEL_DIR/{config.json, encoder.safetensors, decoder.safetensors, vocab.json,
merges.txt} (+ the optional tokenizer files given). The weights keep min-dalle's names and
torch layouts exactly (Linear weights [out, in]); the bias-only LayerNorms have no .weight.
Tensor data starts 256-byte aligned where the sizes allow it (the header is space-padded and
tensors are ordered so that every large tensor lands on a 256-byte boundary).

Hyper-parameters come from the tensor shapes (d_model, layer counts, GLU width, text vocab,
text length, image length, lm_head rows) plus flags for what shapes cannot tell: --heads
(default d_model/64), --start-token (default 16384, dalle-mini; 16383 for min-dalle parity),
--image-vocab-size (VQGAN codes, default 16384). --mini / --mega additionally require the
shapes of the published checkpoints (model-spec §1.1); --hparams auto (default) accepts any
consistent set.

Every key is checked: a missing key, an unexpected key or a wrong shape stops the conversion
with a message naming the file, the key, and the expected and found shapes. A bias-only
LayerNorm .weight present in the input (e.g. a state dict saved straight from the module) is
dropped when it is exactly 1 and is an error otherwise.

If MODEL_DIR/config.json already exists, its "vqgan"/"clip" sections and the file entries this
run does not write ("vqgan", "clip", "clip_merges", "wiki_words") are kept; --fresh drops them.
vocab.json/merges.txt/... are copied into MODEL_DIR unless they are already those files.
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import numpy as np

FORMAT = "dalle-server-model"
FORMAT_VERSION = 1
ALIGN = 256

PRESETS = {
    # model-spec §1.1 (published checkpoints)
    "mini": dict(d_model=1024, encoder_layers=12, decoder_layers=12, attention_heads=16, glu_dim=2730,
                 text_vocab_size=50264, text_length=64, image_length=256, lm_head_size=16385),
    "mega": dict(d_model=2048, encoder_layers=24, decoder_layers=24, attention_heads=32, glu_dim=4096,
                 text_vocab_size=50272, text_length=64, image_length=256, lm_head_size=16416),
}

BIAS_ONLY_LN = re.compile(
    r"^(final_ln|layers\.\d+\.(pre_self_attn_layer_norm|pre_encoder_attn_layer_norm|glu\.ln0|glu\.ln1))\.weight$"
)


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# expected tensors

def layer_keys(i, d, f, cross):
    """Keys and shapes of one encoder/decoder layer (min-dalle names, torch layouts)."""
    p = f"layers.{i}."
    ks = {p + "pre_self_attn_layer_norm.bias": (d,)}
    for w in ("q", "k", "v", "out"):
        ks[p + f"self_attn.{w}_proj.weight"] = (d, d)
    ks[p + "self_attn_layer_norm.weight"] = (d,)
    ks[p + "self_attn_layer_norm.bias"] = (d,)
    if cross:
        ks[p + "pre_encoder_attn_layer_norm.bias"] = (d,)
        for w in ("q", "k", "v", "out"):
            ks[p + f"encoder_attn.{w}_proj.weight"] = (d, d)
        ks[p + "encoder_attn_layer_norm.weight"] = (d,)
        ks[p + "encoder_attn_layer_norm.bias"] = (d,)
    ks[p + "glu.ln0.bias"] = (d,)
    ks[p + "glu.fc0.weight"] = (f, d)
    ks[p + "glu.fc1.weight"] = (f, d)
    ks[p + "glu.ln1.bias"] = (f,)
    ks[p + "glu.fc2.weight"] = (d, f)
    return ks


def expected_keys(hp, which):
    d, f = hp["d_model"], hp["glu_dim"]
    if which == "encoder":
        ks = {"embed_tokens.weight": (hp["text_vocab_size"], d),
              "embed_positions.weight": (hp["text_length"], d)}
        n, cross = hp["encoder_layers"], False
    else:
        ks = {"embed_tokens.weight": (hp["lm_head_size"], d),
              "embed_positions.weight": (hp["image_length"], d)}
        n, cross = hp["decoder_layers"], True
    ks["layernorm_embedding.weight"] = (d,)
    ks["layernorm_embedding.bias"] = (d,)
    for i in range(n):
        ks.update(layer_keys(i, d, f, cross))
    ks["final_ln.bias"] = (d,)
    if which == "decoder":
        ks["lm_head.weight"] = (hp["lm_head_size"], d)
    return ks


# ---------------------------------------------------------------------------------------------
# input

def load_min_dalle(src):
    try:
        import torch
    except ImportError:
        raise ConvertError("--from min-dalle needs torch to read .pt files (pip install torch)")
    out = {}
    for which in ("encoder", "decoder"):
        cands = [os.path.join(src, f"{which}.pt"), os.path.join(src, f"{which}_mini.pt")]
        found = [c for c in cands if os.path.isfile(c)]
        if not found:
            raise ConvertError(f"{src}: no {which}.pt or {which}_mini.pt")
        if len(found) > 1:
            raise ConvertError(f"{src}: both {found[0]} and {found[1]} exist; keep one")
        path = found[0]
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (report any unpickling problem the same way)
            raise ConvertError(f"{path}: cannot load: {e}")
        if not isinstance(sd, dict):
            raise ConvertError(f"{path}: expected a flat dict of tensors, found {type(sd).__name__}")
        arrays = {}
        for k, v in sd.items():
            if not isinstance(k, str) or not torch.is_tensor(v):
                raise ConvertError(f"{path}: entry {k!r} is not a named tensor")
            if not v.is_floating_point():
                raise ConvertError(f"{path}: {k}: dtype {v.dtype} is not floating point")
            arrays[k] = v.detach().to(torch.float32).contiguous().numpy()
        out[which] = (path, arrays)
    return out


def infer_hparams(enc, dec):
    """Everything the shapes tell (heads, start token, image vocab come from flags)."""
    def shape(sd, path, key, ndim):
        if key not in sd:
            raise ConvertError(f"{path}: missing key {key} (needed to infer the hyper-parameters)")
        s = sd[key].shape
        if len(s) != ndim:
            raise ConvertError(f"{path}: {key}: expected {ndim} dims, found shape {list(s)}")
        return s

    def n_layers(sd, path):
        idx = {int(m.group(1)) for k in sd for m in [re.match(r"layers\.(\d+)\.", k)] if m}
        if not idx:
            raise ConvertError(f"{path}: no layers.N.* keys")
        n = max(idx) + 1
        missing = sorted(set(range(n)) - idx)
        if missing:
            raise ConvertError(f"{path}: layers {missing} missing (found layers up to {n - 1})")
        return n

    (ep, e), (dp, d) = enc, dec
    te = shape(e, ep, "embed_tokens.weight", 2)
    pe = shape(e, ep, "embed_positions.weight", 2)
    ti = shape(d, dp, "embed_tokens.weight", 2)
    pi = shape(d, dp, "embed_positions.weight", 2)
    fc0 = shape(e, ep, "layers.0.glu.fc0.weight", 2)
    lm = shape(d, dp, "lm_head.weight", 2)
    return dict(d_model=int(te[1]), encoder_layers=n_layers(e, ep), decoder_layers=n_layers(d, dp),
                glu_dim=int(fc0[0]), text_vocab_size=int(te[0]), text_length=int(pe[0]),
                image_length=int(pi[0]), lm_head_size=int(lm[0]), _dec_embed_rows=int(ti[0]))


def check_tensors(path, sd, want):
    """Validate names and shapes; returns the dict to write (bias-only LN weights of 1 dropped)."""
    errors = []
    out = {}
    for k, v in sd.items():
        if k in want:
            if tuple(v.shape) != tuple(want[k]):
                errors.append(f"{k}: shape mismatch: expected {list(want[k])}, found {list(v.shape)}")
            elif not np.all(np.isfinite(v)):
                errors.append(f"{k}: contains NaN or Inf")
            else:
                out[k] = v
        elif BIAS_ONLY_LN.match(k) and k[: -len("weight")] + "bias" in want:
            if not np.all(v == 1.0):
                errors.append(f"{k}: bias-only LayerNorm has a scale that is not 1 "
                              f"(min {v.min():g}, max {v.max():g}); our format cannot hold it")
            # else: the implicit scale of 1, dropped silently
        else:
            errors.append(f"{k}: unexpected key (shape {list(v.shape)})")
    for k in want:
        if k not in sd:
            errors.append(f"{k}: missing key (expected shape {list(want[k])})")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ConvertError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(shown))
    return out


def read_vocab(path):
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: cannot read vocab: {e}")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ConvertError(f"{path}: expected a JSON object token → integer id")
    specials = {}
    for tok, key in (("<s>", "bos_token_id"), ("<pad>", "pad_token_id"), ("</s>", "eos_token_id"),
                     ("<unk>", "unk_token_id")):
        if tok not in vocab:
            raise ConvertError(f"{path}: special token {tok} missing")
        specials[key] = vocab[tok]
    return vocab, specials


# ---------------------------------------------------------------------------------------------
# output

def order_for_alignment(items):
    """Order (name, nbytes) so that as many tensors as possible start ALIGN-aligned: big
    tensors first; after a tensor that leaves the offset unaligned, the smallest tensor that
    closes the gap exactly (or else the smallest one) follows."""
    rest = sorted(items, key=lambda t: (-t[1], t[0]))
    out, off = [], 0
    while rest:
        gap = (-off) % ALIGN
        if gap == 0:
            pick = rest[0]
        else:
            closing = [t for t in rest if t[1] % ALIGN == gap]
            pick = closing[-1] if closing else rest[-1]
        rest.remove(pick)
        out.append(pick)
        off += pick[1]
    return [n for n, _ in out]


def write_safetensors(path, tensors, dtype, metadata):
    """tensors: name → fp32 numpy array. Writes F16 or F32 little-endian, data 256-aligned."""
    np_dtype, st_dtype = {"f16": (np.dtype("<f2"), "F16"), "f32": (np.dtype("<f4"), "F32")}[dtype]
    data = {}
    for k, v in tensors.items():
        if dtype == "f16":
            big = np.abs(v) > 65504.0
            if big.any():
                raise ConvertError(f"{k}: {int(big.sum())} value(s) exceed the fp16 range (max |x| "
                                   f"{float(np.abs(v).max()):g}); use --dtype f32")
        data[k] = np.ascontiguousarray(v.astype(np_dtype))
    order = order_for_alignment([(k, data[k].nbytes) for k in data])
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for k in order:
        n = data[k].nbytes
        header[k] = {"dtype": st_dtype, "shape": list(data[k].shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-(8 + len(hb))) % ALIGN)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in order:
            f.write(data[k].tobytes())
    os.replace(tmp, path)
    start = 8 + len(hb)
    aligned = sum(1 for k in order if (start + header[k]["data_offsets"][0]) % ALIGN == 0)
    return os.path.getsize(path), aligned, len(order)


def copy_in(src, out_dir, name=None):
    name = name or os.path.basename(src)
    dst = os.path.join(out_dir, name)
    if not os.path.isfile(src):
        raise ConvertError(f"{src}: no such file")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        return name, "kept"
    shutil.copyfile(src, dst)
    return name, "copied"


def optional_file(path, out_dir):
    """An optional tokenizer file: copied in, or — when it names a file inside MODEL_DIR that
    another tool is still to provide — only named (with a warning)."""
    if os.path.isfile(path):
        return copy_in(path, out_dir)
    if os.path.realpath(os.path.dirname(os.path.abspath(path))) == os.path.realpath(out_dir):
        return os.path.basename(path), "named only (not present yet)"
    raise ConvertError(f"{path}: no such file")


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--from", dest="src_format", required=True, choices=["min-dalle"],
                    help="input checkpoint format")
    ap.add_argument("--src", required=True, help="directory with encoder[_mini].pt, decoder[_mini].pt")
    ap.add_argument("--vocab", required=True, help="BART BPE vocab.json")
    ap.add_argument("--merges", required=True, help="BART BPE merges.txt")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--mini", action="store_const", dest="hparams", const="mini",
                   help="require the published mini shapes")
    g.add_argument("--mega", action="store_const", dest="hparams", const="mega",
                   help="require the published Mega shapes")
    g.add_argument("--hparams", choices=["auto", "mini", "mega"], default="auto",
                   help="auto (default): infer from the shapes")
    ap.set_defaults(hparams="auto")
    ap.add_argument("--heads", type=int, help="attention heads (default: the preset's, else d_model/64)")
    ap.add_argument("--start-token", type=int, default=16384,
                    help="decoder start token: 16384 dalle-mini (default), 16383 min-dalle parity")
    ap.add_argument("--image-vocab-size", type=int, default=16384,
                    help="VQGAN codes that can be sampled (default 16384)")
    ap.add_argument("--dtype", required=True, choices=["f16", "f32"], help="weight dtype written")
    ap.add_argument("--name", help="model name in config.json (default: the output folder's name)")
    ap.add_argument("--clip-merges", help="CLIP BPE merges file to copy in and name in config.json")
    ap.add_argument("--wiki-words", help="enwiki-words-frequency.txt to copy in (hashtag splitting)")
    ap.add_argument("--fresh", action="store_true",
                    help="ignore an existing MODEL_DIR/config.json (default: keep its vqgan/clip parts)")
    ap.add_argument("--out", required=True, help="model directory to write")
    args = ap.parse_args(argv)

    try:
        convert(args)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1
    return 0


def convert(args):
    sds = load_min_dalle(args.src)
    enc_path, enc = sds["encoder"]
    dec_path, dec = sds["decoder"]
    hp = infer_hparams((enc_path, enc), (dec_path, dec))
    dec_rows = hp.pop("_dec_embed_rows")
    if dec_rows != hp["lm_head_size"]:
        raise ConvertError(f"{dec_path}: embed_tokens.weight has {dec_rows} rows but lm_head.weight "
                           f"has {hp['lm_head_size']}; they must be equal (image vocab + 1)")
    d = hp["d_model"]
    if args.heads is not None:
        heads = args.heads
    elif args.hparams in PRESETS:
        heads = PRESETS[args.hparams]["attention_heads"]
    else:
        heads = max(1, d // 64)
    if heads <= 0 or d % heads:
        raise ConvertError(f"d_model {d} is not divisible by {heads} heads (use --heads)")
    hp["attention_heads"] = heads

    if args.hparams in PRESETS:
        diffs = [f"{k}: published {v}, found {hp[k]}" for k, v in PRESETS[args.hparams].items() if hp[k] != v]
        if diffs:
            raise ConvertError(f"--{args.hparams}: the checkpoint does not have the published shapes:\n  "
                               + "\n  ".join(diffs))

    if not 0 < args.image_vocab_size < hp["lm_head_size"]:
        raise ConvertError(f"--image-vocab-size {args.image_vocab_size} must be below lm_head_size "
                           f"{hp['lm_head_size']}")
    if not 0 <= args.start_token < hp["lm_head_size"]:
        raise ConvertError(f"--start-token {args.start_token} must be a decoder embedding row "
                           f"(0..{hp['lm_head_size'] - 1})")

    enc_out = check_tensors(enc_path, enc, expected_keys(hp, "encoder"))
    dec_out = check_tensors(dec_path, dec, expected_keys(hp, "decoder"))

    vocab, specials = read_vocab(args.vocab)
    for key, i in specials.items():
        if not 0 <= i < hp["text_vocab_size"]:
            raise ConvertError(f"{args.vocab}: {key} = {i} has no encoder embedding row "
                               f"(text_vocab_size {hp['text_vocab_size']})")
    beyond = sorted(t for t, i in vocab.items() if i >= hp["text_vocab_size"])
    if beyond:
        print(f"note: {len(beyond)} vocab id(s) ≥ text_vocab_size {hp['text_vocab_size']} have no "
              f"embedding row: {beyond[:5]}{' ...' if len(beyond) > 5 else ''} "
              f"(as <mask> in the published mini model; the C tokenizer must never emit them)")
    if not os.path.isfile(args.merges):
        raise ConvertError(f"{args.merges}: no such file")

    out = args.out
    os.makedirs(out, exist_ok=True)
    old = {}
    cfg_path = os.path.join(out, "config.json")
    if os.path.exists(cfg_path) and not args.fresh:
        try:
            with open(cfg_path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise ConvertError(f"{cfg_path}: exists but cannot be read ({e}); use --fresh to replace it")

    files = {"encoder": "encoder.safetensors", "decoder": "decoder.safetensors"}
    notes = []
    for key, src, name in (("vocab", args.vocab, "vocab.json"), ("merges", args.merges, "merges.txt")):
        files[key], how = copy_in(src, out, name)
        notes.append(f"{files[key]}: {how}")
    for key, src in (("clip_merges", args.clip_merges), ("wiki_words", args.wiki_words)):
        if src:
            files[key], how = optional_file(src, out)
            notes.append(f"{files[key]}: {how}")
    for key in ("clip_merges", "wiki_words", "vqgan", "clip"):
        if key not in files and key in old.get("files", {}):
            files[key] = old["files"][key]
            notes.append(f"{files[key]}: kept from the existing config.json")

    meta = {"format": "pt", "converted_from": "min-dalle", "source": os.path.basename(enc_path)}
    sizes = {}
    for which, tensors, path in (("encoder", enc_out, enc_path), ("decoder", dec_out, dec_path)):
        meta["source"] = os.path.basename(path)
        sizes[which] = write_safetensors(os.path.join(out, files[which]), tensors, args.dtype, meta)

    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": args.name or os.path.basename(os.path.abspath(out)),
        "bart": {
            "d_model": d,
            "encoder_layers": hp["encoder_layers"],
            "decoder_layers": hp["decoder_layers"],
            "attention_heads": heads,
            "glu_dim": hp["glu_dim"],
            "text_vocab_size": hp["text_vocab_size"],
            "text_length": hp["text_length"],
            "image_vocab_size": args.image_vocab_size,
            "image_length": hp["image_length"],
            "lm_head_size": hp["lm_head_size"],
            "start_token": args.start_token,
            "layer_norm_eps": 1e-5,
        },
        "text": {"normalize": True, **specials},
        "generation": {"cond_scale": 10.0, "top_k": 50, "top_p": 1.0, "temperature": 1.0},
        "files": files,
    }
    for section in ("vqgan", "clip"):
        if section in old:
            config[section] = old[section]
            notes.append(f'"{section}" section: kept from the existing config.json')
    tmp = cfg_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, cfg_path)

    print(f"hparams: {json.dumps(config['bart'])}")
    for which in ("encoder", "decoder"):
        size, aligned, n = sizes[which]
        print(f"{os.path.join(out, files[which])}: {size} bytes, {n} tensors {args.dtype.upper()}, "
              f"{aligned} of them {ALIGN}-byte aligned")
    for n in notes:
        print(n)
    print(f"wrote {cfg_path}")


if __name__ == "__main__":
    sys.exit(main())
