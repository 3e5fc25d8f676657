"""VQGAN decoder: min-dalle detoker.pt and the vqgan-jax Flax checkpoint
(dalle-mini/vqgan_imagenet_f16_16384 flax_model.msgpack) → min-dalle detokenizer names, torch
layouts (conv weights [out, in, kh, kw]) (docs/model-spec.md §5, §7.2, §7.3)."""
import math
import re
from collections import OrderedDict

from .common import check_and_plan, transposed
from .readers import ConvertError, Lazy, flatten, read_flax_msgpack, read_torch


def _resblock(ks, p, cin, cout):
    ks[p + "norm1.weight"] = (cin,)
    ks[p + "norm1.bias"] = (cin,)
    ks[p + "conv1.weight"] = (cout, cin, 3, 3)
    ks[p + "conv1.bias"] = (cout,)
    ks[p + "norm2.weight"] = (cout,)
    ks[p + "norm2.bias"] = (cout,)
    ks[p + "conv2.weight"] = (cout, cout, 3, 3)
    ks[p + "conv2.bias"] = (cout,)
    if cin != cout:
        ks[p + "nin_shortcut.weight"] = (cout, cin, 1, 1)
        ks[p + "nin_shortcut.bias"] = (cout,)


def _attn(ks, p, c):
    ks[p + "norm.weight"] = (c,)
    ks[p + "norm.bias"] = (c,)
    for n in ("q", "k", "v", "proj_out"):
        ks[p + f"{n}.weight"] = (c, c, 1, 1)
        ks[p + f"{n}.bias"] = (c,)


def expected_keys(hp):
    """Every tensor of taming's decode path for the "vqgan" config section hp."""
    ch, mult, nrb = hp["ch"], hp["ch_mult"], hp["num_res_blocks"]
    levels = len(mult)
    ks = OrderedDict()
    ks["embedding.weight"] = (hp["codebook_size"], hp["embed_dim"])
    ks["post_quant_conv.weight"] = (hp["z_channels"], hp["embed_dim"], 1, 1)
    ks["post_quant_conv.bias"] = (hp["z_channels"],)
    block_in = ch * mult[-1]
    ks["decoder.conv_in.weight"] = (block_in, hp["z_channels"], 3, 3)
    ks["decoder.conv_in.bias"] = (block_in,)
    _resblock(ks, "decoder.mid.block_1.", block_in, block_in)
    _attn(ks, "decoder.mid.attn_1.", block_in)
    _resblock(ks, "decoder.mid.block_2.", block_in, block_in)
    res = hp["resolution"] >> (levels - 1)
    for lvl in reversed(range(levels)):
        out = ch * mult[lvl]
        for b in range(nrb + 1):
            _resblock(ks, f"decoder.up.{lvl}.block.{b}.", block_in, out)
            block_in = out
            if res in hp["attn_resolutions"]:
                _attn(ks, f"decoder.up.{lvl}.attn.{b}.", out)
        if lvl:
            ks[f"decoder.up.{lvl}.upsample.conv.weight"] = (out, out, 3, 3)
            ks[f"decoder.up.{lvl}.upsample.conv.bias"] = (out,)
            res *= 2
    ks["decoder.norm_out.weight"] = (block_in,)
    ks["decoder.norm_out.bias"] = (block_in,)
    ks["decoder.conv_out.weight"] = (hp["out_ch"], block_in, 3, 3)
    ks["decoder.conv_out.bias"] = (hp["out_ch"],)
    return ks


def infer_hparams(sd, label, latent, eps):
    def shape(key, ndim):
        if key not in sd:
            raise ConvertError(f"{label}: missing tensor {key} (needed to infer the VQGAN sizes)")
        s = sd[key].shape
        if len(s) != ndim:
            raise ConvertError(f"{label}: {key}: expected {ndim} dims, found shape {list(s)}")
        return s

    emb = shape("embedding.weight", 2)
    pq = shape("post_quant_conv.weight", 4)
    out = shape("decoder.conv_out.weight", 4)
    levels_idx = {int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.(\d+)\.", k)] if m}
    if not levels_idx or levels_idx != set(range(max(levels_idx) + 1)):
        raise ConvertError(f"{label}: decoder.up.N levels {sorted(levels_idx)}: expected 0..N-1")
    levels = max(levels_idx) + 1
    chans, attn_levels = [], []
    for lvl in range(levels):
        blocks = {int(m.group(1)) for k in sd for m in [re.match(rf"decoder\.up\.{lvl}\.block\.(\d+)\.", k)] if m}
        if not blocks:
            raise ConvertError(f"{label}: decoder.up.{lvl} has no blocks")
        if lvl == 0:
            nblocks = max(blocks) + 1
        chans.append(int(shape(f"decoder.up.{lvl}.block.0.conv2.weight", 4)[0]))
        if any(k.startswith(f"decoder.up.{lvl}.attn.") for k in sd):
            attn_levels.append(lvl)
    ch = 0
    for c in chans:
        ch = math.gcd(ch, c)
    resolution = latent << (levels - 1)
    hp = OrderedDict(
        codebook_size=int(emb[0]), embed_dim=int(emb[1]), z_channels=int(pq[0]), ch=ch,
        ch_mult=[c // ch for c in chans], num_res_blocks=nblocks - 1,
        attn_resolutions=sorted({resolution >> lvl for lvl in attn_levels}, reverse=True),
        resolution=resolution, out_ch=int(out[0]), groups=32, eps=eps)
    bad = [c for c in chans if c % 32]
    if bad:
        raise ConvertError(f"{label}: level channels {chans}: GroupNorm with 32 groups needs multiples of 32")
    return hp


def load_detoker(path):
    return path, read_torch(path)


# Flax (vqgan-jax) → min-dalle names
def _flax_name(key):
    """'decoder/up_4/attn_0/proj_out/kernel' → ('decoder.up.4.attn.0.proj_out', 'kernel')."""
    parts = key.split("/")
    leaf = parts.pop()
    out = []
    for i, p in enumerate(parts):
        m = re.fullmatch(r"(up|block|attn)_(\d+)", p)
        if m and (p.startswith("up_") or (i >= 2 and parts[1].startswith("up_"))):
            out += [m.group(1), m.group(2)]
        else:
            out.append(p)
    return ".".join(out), leaf


def load_flax(path):
    tree = read_flax_msgpack(path)
    if set(tree) == {"params"}:
        tree = tree["params"]
    flat = flatten(tree)
    sd = OrderedDict()
    dropped = 0
    errors = []
    for key, v in flat.items():
        if not isinstance(v, Lazy):
            errors.append(f"{key}: not an array")
            continue
        if key.startswith("encoder/") or key.startswith("quant_conv/"):
            dropped += 1  # the encoder half is not needed to decode codes
            continue
        if key == "quantize/embedding/embedding":
            sd["embedding.weight"] = v
            continue
        if not (key.startswith("decoder/") or key.startswith("post_quant_conv/")):
            errors.append(f"{key}: unknown key (expected encoder/, decoder/, quantize/, quant_conv/, post_quant_conv/)")
            continue
        name, leaf = _flax_name(key)
        if leaf == "kernel":
            if len(v.shape) != 4:
                errors.append(f"{key}: a conv kernel must be [kh, kw, in, out], found shape {list(v.shape)}")
                continue
            sd[name + ".weight"] = transposed(v, (3, 2, 0, 1), "HWIO kernel → OIHW")
        elif leaf == "scale":
            sd[name + ".weight"] = v
        elif leaf == "bias":
            sd[name + ".bias"] = v
        else:
            errors.append(f"{key}: unknown key (leaf {leaf!r}; expected kernel, bias or scale)")
    if errors:
        raise ConvertError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors[:20]))
    return path, sd, dropped


def plan_vqgan(label, sd, hp):
    return check_and_plan(label, sd, expected_keys(hp))
