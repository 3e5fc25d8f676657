"""CLIP: a Hugging Face CLIPModel checkpoint (model.safetensors or pytorch_model.bin, with its
config.json when present) → clip.safetensors with the same (Hugging Face) names, and the
"clip" section of our config.json (docs/model-spec.md §6.4, §7.4)."""
import json
import math
import os
import re
from collections import OrderedDict

from .common import check_and_plan
from .readers import ConvertError, read_safetensors, read_torch

BUFFERS = {"text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"}


def find_files(src):
    """src: a directory (model.safetensors or pytorch_model.bin, + config.json) or a file."""
    if os.path.isdir(src):
        for name in ("model.safetensors", "pytorch_model.bin"):
            p = os.path.join(src, name)
            if os.path.isfile(p):
                cfg = os.path.join(src, "config.json")
                return p, cfg if os.path.isfile(cfg) else None
        raise ConvertError(f"{src}: no model.safetensors or pytorch_model.bin")
    if not os.path.isfile(src):
        raise ConvertError(f"{src}: no such file or directory")
    cfg = os.path.join(os.path.dirname(os.path.abspath(src)), "config.json")
    return src, cfg if os.path.isfile(cfg) else None


def load(path):
    if path.endswith(".safetensors"):
        sd = read_safetensors(path)
    else:
        sd = read_torch(path)
    return OrderedDict((k, v) for k, v in sd.items() if k not in BUFFERS)


def _tower_keys(ks, prefix, hp, n_layers, final_ln):
    w, m = hp["width"], hp["mlp_dim"]
    for i in range(n_layers):
        p = f"{prefix}.encoder.layers.{i}."
        for n in ("q", "k", "v", "out"):
            ks[p + f"self_attn.{n}_proj.weight"] = (w, w)
            ks[p + f"self_attn.{n}_proj.bias"] = (w,)
        for n in ("layer_norm1", "layer_norm2"):
            ks[p + f"{n}.weight"] = (w,)
            ks[p + f"{n}.bias"] = (w,)
        ks[p + "mlp.fc1.weight"] = (m, w)
        ks[p + "mlp.fc1.bias"] = (m,)
        ks[p + "mlp.fc2.weight"] = (w, m)
        ks[p + "mlp.fc2.bias"] = (w,)
    ks[f"{prefix}.{final_ln}.weight"] = (w,)
    ks[f"{prefix}.{final_ln}.bias"] = (w,)


def expected_keys(sec):
    v, t, e = sec["vision"], sec["text"], sec["embed_dim"]
    ks = OrderedDict()
    n_patch = (v["image_size"] // v["patch_size"]) ** 2
    ks["vision_model.embeddings.class_embedding"] = (v["width"],)
    ks["vision_model.embeddings.patch_embedding.weight"] = (v["width"], 3, v["patch_size"], v["patch_size"])
    ks["vision_model.embeddings.position_embedding.weight"] = (n_patch + 1, v["width"])
    ks["vision_model.pre_layrnorm.weight"] = (v["width"],)
    ks["vision_model.pre_layrnorm.bias"] = (v["width"],)
    _tower_keys(ks, "vision_model", v, v["layers"], "post_layernorm")
    ks["visual_projection.weight"] = (e, v["width"])
    ks["text_model.embeddings.token_embedding.weight"] = (t["vocab_size"], t["width"])
    ks["text_model.embeddings.position_embedding.weight"] = (t["context_length"], t["width"])
    _tower_keys(ks, "text_model", t, t["layers"], "final_layer_norm")
    ks["text_projection.weight"] = (e, t["width"])
    return ks


def infer_section(sd, label, cfg_path):
    def shape(key, ndim):
        if key not in sd:
            raise ConvertError(f"{label}: missing tensor {key} (needed to infer the CLIP sizes)")
        s = sd[key].shape
        if len(s) != ndim:
            raise ConvertError(f"{label}: {key}: expected {ndim} dims, found shape {list(s)}")
        return tuple(int(x) for x in s)

    def layers(prefix):
        idx = {int(m.group(1)) for k in sd for m in [re.match(rf"{prefix}\.encoder\.layers\.(\d+)\.", k)] if m}
        if not idx:
            raise ConvertError(f"{label}: no {prefix}.encoder.layers.N tensors")
        return max(idx) + 1

    pe = shape("vision_model.embeddings.patch_embedding.weight", 4)
    vpos = shape("vision_model.embeddings.position_embedding.weight", 2)
    grid = math.isqrt(vpos[0] - 1)
    if grid * grid != vpos[0] - 1:
        raise ConvertError(f"{label}: vision position embedding has {vpos[0]} rows, not a square grid + 1")
    tok = shape("text_model.embeddings.token_embedding.weight", 2)
    tpos = shape("text_model.embeddings.position_embedding.weight", 2)
    vproj = shape("visual_projection.weight", 2)
    vfc1 = shape("vision_model.encoder.layers.0.mlp.fc1.weight", 2)
    tfc1 = shape("text_model.encoder.layers.0.mlp.fc1.weight", 2)
    sec = OrderedDict(
        embed_dim=vproj[0], layer_norm_eps=1e-5, logit_scale_from_weights=True,
        vision=OrderedDict(image_size=pe[2] * grid, patch_size=pe[2], width=pe[0], layers=layers("vision_model"),
                           heads=max(1, pe[0] // 64), mlp_dim=vfc1[0]),
        text=OrderedDict(context_length=tpos[0], vocab_size=tok[0], width=tok[1], layers=layers("text_model"),
                         heads=max(1, tok[1] // 64), mlp_dim=tfc1[0]))
    if cfg_path:
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise ConvertError(f"{cfg_path}: cannot read: {e}")
        diffs = []
        for tower, key in (("vision", "vision_config"), ("text", "text_config")):
            tc = cfg.get(key) or {}
            if "num_attention_heads" in tc:
                sec[tower]["heads"] = int(tc["num_attention_heads"])
            for ck, ok in (("hidden_size", "width"), ("num_hidden_layers", "layers"),
                           ("intermediate_size", "mlp_dim"), ("image_size", "image_size"),
                           ("patch_size", "patch_size"), ("vocab_size", "vocab_size"),
                           ("max_position_embeddings", "context_length")):
                if ck in tc and ok in sec[tower] and tc[ck] != sec[tower][ok]:
                    diffs.append(f"{key}.{ck} = {tc[ck]} but the weights say {sec[tower][ok]}")
            if tc.get("hidden_act", "quick_gelu") != "quick_gelu":
                diffs.append(f"{key}.hidden_act = {tc['hidden_act']!r}: only quick_gelu (OpenAI CLIP) is supported")
            eps = tc.get("layer_norm_eps", 1e-5)
            if abs(eps - 1e-5) > 1e-12:
                sec["layer_norm_eps"] = eps
        if "projection_dim" in cfg and cfg["projection_dim"] != sec["embed_dim"]:
            diffs.append(f"projection_dim = {cfg['projection_dim']} but the weights say {sec['embed_dim']}")
        if diffs:
            raise ConvertError(f"{cfg_path}: does not match the checkpoint:\n  " + "\n  ".join(diffs))
    for tower in ("vision", "text"):
        w, h = sec[tower]["width"], sec[tower]["heads"]
        if w % h:
            raise ConvertError(f"{label}: {tower} width {w} is not divisible by {h} heads")
    return sec


def plan_clip(label, sd, sec):
    want = expected_keys(sec)
    if "logit_scale" in sd:
        want["logit_scale"] = tuple(sd["logit_scale"].shape) if tuple(sd["logit_scale"].shape) in ((), (1,)) else ()
    else:
        raise ConvertError(f"{label}: logit_scale: missing tensor (expected shape [])")
    return check_and_plan(label, sd, want)
