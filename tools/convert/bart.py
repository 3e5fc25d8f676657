"""DalleBart (encoder, decoder + lm_head): min-dalle torch files and dalle-mini Flax checkpoints →
min-dalle state-dict names and torch layouts (docs/model-spec.md §7.1, §7.2)."""
import json
import os
import re
from collections import OrderedDict

from .common import View, check_and_plan, transposed
from .readers import ConvertError, Lazy, flatten, read_flax_msgpack, read_torch

PRESETS = {
    # docs/model-spec.md §1.1 (published checkpoints)
    "mini": dict(d_model=1024, encoder_layers=12, decoder_layers=12, attention_heads=16, glu_dim=2730,
                 text_vocab_size=50264, text_length=64, image_length=256, lm_head_size=16385),
    "mega": dict(d_model=2048, encoder_layers=24, decoder_layers=24, attention_heads=32, glu_dim=4096,
                 text_vocab_size=50272, text_length=64, image_length=256, lm_head_size=16416),
}


def layer_keys(i, d, f, cross):
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


def implicit_scales(want):
    """The .weight of every bias-only LayerNorm in `want` (dropped when exactly 1)."""
    return {k[: -len("bias")] + "weight" for k in want
            if re.search(r"(^final_ln|pre_self_attn_layer_norm|pre_encoder_attn_layer_norm|glu\.ln[01])\.bias$", k)}


# ---------------------------------------------------------------------------------------------
# min-dalle

def load_min_dalle(src):
    """DIR with encoder.pt + decoder.pt (Mega) or encoder_mini.pt + decoder_mini.pt → (label, dict)
    for "encoder" and "decoder"."""
    out = {}
    for which in ("encoder", "decoder"):
        cands = [os.path.join(src, f"{which}.pt"), os.path.join(src, f"{which}_mini.pt")]
        found = [c for c in cands if os.path.isfile(c)]
        if not found:
            raise ConvertError(f"{src}: no {which}.pt or {which}_mini.pt")
        if len(found) > 1:
            raise ConvertError(f"{src}: both {found[0]} and {found[1]} exist; keep one")
        out[which] = (found[0], read_torch(found[0]))
    return out


# ---------------------------------------------------------------------------------------------
# dalle-mini Flax

FLAX_LAYER = {
    "LayerNorm_0/bias": "pre_self_attn_layer_norm.bias",
    "LayerNorm_0/scale": "pre_self_attn_layer_norm.weight",
    "LayerNorm_1/scale": "self_attn_layer_norm.weight",
    "LayerNorm_1/bias": "self_attn_layer_norm.bias",
    "LayerNorm_2/bias": "pre_encoder_attn_layer_norm.bias",
    "LayerNorm_2/scale": "pre_encoder_attn_layer_norm.weight",
    "LayerNorm_3/scale": "encoder_attn_layer_norm.weight",
    "LayerNorm_3/bias": "encoder_attn_layer_norm.bias",
    "GLU_0/LayerNorm_0/bias": "glu.ln0.bias",
    "GLU_0/LayerNorm_0/scale": "glu.ln0.weight",
    "GLU_0/LayerNorm_1/bias": "glu.ln1.bias",
    "GLU_0/LayerNorm_1/scale": "glu.ln1.weight",
    "GLU_0/Dense_0/kernel": "glu.fc0.weight",
    "GLU_0/Dense_1/kernel": "glu.fc1.weight",
    "GLU_0/Dense_2/kernel": "glu.fc2.weight",
}
for _a, _b in (("FlaxBartAttention_0", "self_attn"), ("FlaxBartAttention_1", "encoder_attn")):
    for _w in ("q", "k", "v", "out"):
        FLAX_LAYER[f"{_a}/{_w}_proj/kernel"] = f"{_b}.{_w}_proj.weight"
FLAX_TOP = {
    "embed_tokens/embedding": "embed_tokens.weight",
    "embed_positions/embedding": "embed_positions.weight",
    "layernorm_embedding/scale": "layernorm_embedding.weight",
    "layernorm_embedding/bias": "layernorm_embedding.bias",
    "final_ln/bias": "final_ln.bias",
    "final_ln/scale": "final_ln.weight",
}
SCAN = {"encoder": "FlaxBartEncoderLayers", "decoder": "FlaxBartDecoderLayers"}


def _linear(src):
    """Flax Dense kernel [in, out] → torch Linear weight [out, in]."""
    if len(src.shape) != 2:
        raise ConvertError(f"{src.where}: a Dense kernel must have 2 dims, found shape {list(src.shape)}")
    return transposed(src, (1, 0), "kernel [in,out] transposed")


def load_flax(path):
    """flax_model.msgpack (scanned layers) → {"encoder": (label, dict), "decoder": (label, dict)} in
    min-dalle names. Any key outside the known tree stops the conversion naming the key."""
    tree = read_flax_msgpack(path)
    if set(tree) == {"params"}:
        tree = tree["params"]
    flat = flatten(tree)
    out = {"encoder": OrderedDict(), "decoder": OrderedDict()}
    errors = []
    for key, v in flat.items():
        if not isinstance(v, Lazy):
            errors.append(f"{key}: not an array ({type(v).__name__})")
            continue
        if key == "lm_head/kernel":
            out["decoder"]["lm_head.weight"] = _linear(v)
            continue
        m = re.fullmatch(r"model/(encoder|decoder)/(.+)", key)
        if not m:
            errors.append(f"{key}: unknown key (expected model/encoder/…, model/decoder/… or lm_head/kernel)")
            continue
        which, rest = m.groups()
        if rest in FLAX_TOP:
            out[which][FLAX_TOP[rest]] = v
            continue
        m2 = re.fullmatch(r"layers/([A-Za-z]+)/(.+)", rest)
        if not m2 or m2.group(1) != SCAN[which] or m2.group(2) not in FLAX_LAYER:
            hint = ""
            if re.match(r"layers/\d+/", rest):
                hint = " (unscanned layers; this converter reads the scanned layout the published checkpoints use)"
            errors.append(f"{key}: unknown key{hint}")
            continue
        name = FLAX_LAYER[m2.group(2)]
        if which == "encoder" and ("encoder_attn" in name or "pre_encoder_attn" in name):
            errors.append(f"{key}: unknown key (cross-attention in the encoder)")
            continue
        if len(v.shape) < 2:
            errors.append(f"{key}: scanned layer parameter without a leading layer axis, shape {list(v.shape)}")
            continue
        for i in range(v.shape[0]):
            t = v.index0(i)
            out[which][f"layers.{i}.{name}"] = _linear(t) if name.endswith("proj.weight") or ".fc" in name else t
    if errors:
        raise ConvertError(f"{path}: {len(errors)} problem(s):\n  " + "\n  ".join(errors[:20]))
    return {w: (f"{path} ({w})", out[w]) for w in ("encoder", "decoder")}


def read_flax_config(path):
    """dalle-mini config.json → the fields we check, or {} when absent."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: cannot read: {e}")
    if not isinstance(c, dict):
        raise ConvertError(f"{path}: not a JSON object")
    return c


def check_flax_config(cfg, path, hp):
    """The dalle-mini config.json must agree with the tensor shapes."""
    pairs = [("d_model", "d_model"), ("encoder_layers", "encoder_layers"),
             ("decoder_layers", "decoder_layers"), ("encoder_ffn_dim", "glu_dim"),
             ("decoder_ffn_dim", "glu_dim"), ("encoder_vocab_size", "text_vocab_size"),
             ("max_text_length", "text_length"), ("image_length", "image_length"),
             ("encoder_attention_heads", "attention_heads"), ("decoder_attention_heads", "attention_heads")]
    diffs = [f"{ck} = {cfg[ck]} but the weights say {hp[hk]}" for ck, hk in pairs
             if ck in cfg and hk in hp and cfg[ck] != hp[hk]]
    if "image_vocab_size" in cfg and cfg["image_vocab_size"] + 1 != hp["lm_head_size"]:
        diffs.append(f"image_vocab_size = {cfg['image_vocab_size']} but lm_head has {hp['lm_head_size']} "
                     f"outputs (expected image_vocab_size + 1)")
    for k, want in (("use_bias", False), ("use_glu", True), ("scale_embedding", False),
                    ("use_cosine_attention", False), ("use_head_scale", False),
                    ("use_swin_position_embeddings", False), ("use_deepnet_scaling", False),
                    ("use_alibi", False), ("tie_word_embeddings", False)):
        if k in cfg and bool(cfg[k]) != want:
            diffs.append(f"{k} = {cfg[k]}: not supported (the published models have {want})")
    for k, want in (("ln_type", "layernorm"), ("ln_positions", "normformer"),
                    ("activation_function", "gelu")):
        if k in cfg and cfg[k] != want:
            diffs.append(f"{k} = {cfg[k]!r}: not supported (expected {want!r})")
    if cfg.get("sinkhorn_iters", 1) != 1:
        diffs.append(f"sinkhorn_iters = {cfg['sinkhorn_iters']}: not supported (expected 1)")
    if diffs:
        raise ConvertError(f"{path}: does not match the checkpoint:\n  " + "\n  ".join(diffs))


# ---------------------------------------------------------------------------------------------

def infer_hparams(enc, dec):
    def shape(sd, path, key, ndim):
        if key not in sd:
            raise ConvertError(f"{path}: missing tensor {key} (needed to infer the hyper-parameters)")
        s = sd[key].shape
        if len(s) != ndim:
            raise ConvertError(f"{path}: {key}: expected {ndim} dims, found shape {list(s)}")
        return s

    def n_layers(sd, path):
        idx = {int(m.group(1)) for k in sd for m in [re.match(r"layers\.(\d+)\.", k)] if m}
        if not idx:
            raise ConvertError(f"{path}: no layers.N.* tensors")
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
    hp = dict(d_model=int(te[1]), encoder_layers=n_layers(e, ep), decoder_layers=n_layers(d, dp),
              glu_dim=int(fc0[0]), text_vocab_size=int(te[0]), text_length=int(pe[0]),
              image_length=int(pi[0]), lm_head_size=int(lm[0]))
    if int(ti[0]) != hp["lm_head_size"]:
        raise ConvertError(f"{dp}: embed_tokens.weight has {ti[0]} rows but lm_head.weight has "
                           f"{hp['lm_head_size']}; they must be equal (image vocab + 1)")
    return hp


def plan_bart(sources, hp):
    """→ {"encoder": plan, "decoder": plan} after checking every name and shape."""
    plans = {}
    for which in ("encoder", "decoder"):
        label, sd = sources[which]
        want = expected_keys(hp, which)
        plans[which] = check_and_plan(label, sd, want, implicit_scales(want))
    return plans
