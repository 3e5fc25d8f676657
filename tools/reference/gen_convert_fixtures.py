#!/usr/bin/env python3
"""gen_convert_fixtures.py — tiny checkpoints in each published format, saved by the peers' own
code, and the peers' outputs on them: the fixtures of tests/convert/ (tools/convert.py).

    /work/venv-ref/bin/python tools/reference/gen_convert_fixtures.py [--out tests/golden/convert]

What is written (all weights random, seeded, rounded to fp16 where the published files are fp16):
  bart/min-dalle/encoder.pt, decoder.pt   min-dalle's DalleBartEncoder/Decoder state dicts,
        torch.save'd in fp16 without the bias-only LayerNorm scales (as kuprel/min-dalle ships them).
        d_model 32, 2 heads, GLU 48, 2+2 layers, text vocab 3999 (models/tiny/vocab.json, mini
        style), 64 text positions, 256 image positions, lm_head 513 rows (512 codes + BOS).
  bart/flax/flax_model.msgpack, config.json   the same weights as a dalle-mini DalleBart parameter
        tree (scanned layers stacked on a leading axis, Dense kernels [in, out], bias-only norms
        holding only "bias", lm_head/kernel [d, V]) written by flax.serialization.to_bytes (flax
        0.12.8) with MAX_CHUNK_SIZE lowered to 4000 bytes so that arrays are stored chunked as
        flax stores arrays over 1 GiB (chunk borders fall inside layers); config.json has the
        dalle-mini fields (decoder_start_token_id 512 = image_vocab_size). dalle-mini's own
        save_pretrained needs transformers 4.x Flax classes (transformers 5 has none), hence the
        serializer route the issue allows.
  vqgan/detoker.pt   taming-transformers Decoder + codebook + post_quant_conv (min-dalle detokenizer
        names; stored fp16 to keep the fixture small, the published file is fp32): 512 codes of dim 8, z 32, ch 32, ch_mult (1, 2), 1 res block
        (2 per level), attention at 16 and in the middle, 32×32 output from the 16×16 grid.
  vqgan/flax/flax_model.msgpack   the same as a vqgan-jax parameter tree (names of VJ's
        convert_pt_model_to_jax: "name.N" → "name_N", conv kernels HWIO, GroupNorm scale/bias,
        quantize/embedding/embedding) plus small encoder/quant_conv entries, flax-serialized.
  clip/safetensors/{model.safetensors,config.json}, clip/bin/{pytorch_model.bin,config.json}
        a transformers CLIPModel (vision 224/32, width 32, 2 layers, 2 heads; text vocab 49408,
        width 8, 2 layers, 2 heads; projection 8) saved by save_pretrained in fp16, as safetensors
        and as a torch .bin.
  clip/img{0,1,2}.jpg   three 256×256 JPEG test images.
  expected.json   peer outputs:
        bart: per prompt, start token and cond scale, the guided greedy codes of min-dalle's
              DalleBartDecoder.forward (fp32; CFG (1−s)·uncond + s·cond, argmax over the 512
              codes) with the smallest top-1/top-2 margin;
        vqgan: 2 code grids and taming's uint8 output (clip(0,1)·255 truncated, HWC);
        clip: transformers CLIPModel logits_per_image for the JPEGs as PIL decodes them and the
              prompts as open_clip tokenizes them (fp32 on the fp16-rounded weights);
        and the sha256 of every fixture file.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import flax
import flax.serialization
import numpy as np
import open_clip
import torch
import transformers
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_bart_golden as gbg  # noqa: E402
import make_tiny_bart as mtb  # noqa: E402
import make_tiny_clip as mtc  # noqa: E402
import make_tiny_vqgan as mtv  # noqa: E402
from gen_clip_golden import CLIPImageProcessorPil, synthetic_images  # noqa: E402

BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, attention_heads=2, glu_dim=48,
            text_vocab_size=3999, text_length=64, image_length=256, lm_head_size=513)
IMAGE_VOCAB = 512
PROMPTS = ["a red bicycle leaning against a brick wall", "an astronaut riding a horse"]
COND_SCALES = [1.0, 10.0]
STARTS = [512, 511]
VQGAN = {"codebook_size": 512, "embed_dim": 8, "z_channels": 32, "ch": 32, "ch_mult": [1, 2],
         "num_res_blocks": 1, "attn_resolutions": [16], "resolution": 32, "out_ch": 3, "groups": 32, "eps": 1e-6}
CLIP = {"embed_dim": 8, "layer_norm_eps": 1e-5, "logit_scale_from_weights": True,
        "vision": {"image_size": 224, "patch_size": 32, "width": 32, "layers": 2, "heads": 2, "mlp_dim": 64},
        "text": {"context_length": 77, "vocab_size": 49408, "width": 8, "layers": 2, "heads": 2, "mlp_dim": 16}}
CLIP_PROMPTS = ["a red bicycle", "smooth waves of colour", "a checkerboard"]
SEED = 7
CHUNK = 4000


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# BART

def make_bart(out):
    enc = mtb.DalleBartEncoder(layer_count=BART["encoder_layers"], embed_count=BART["d_model"],
                               attention_head_count=BART["attention_heads"],
                               text_vocab_count=BART["text_vocab_size"], text_token_count=BART["text_length"],
                               glu_embed_count=BART["glu_dim"], device="cpu").eval()
    dec = mtb.DalleBartDecoder(image_vocab_count=IMAGE_VOCAB, embed_count=BART["d_model"],
                               attention_head_count=BART["attention_heads"], glu_embed_count=BART["glu_dim"],
                               layer_count=BART["decoder_layers"], device="cpu").eval()
    gen = torch.Generator().manual_seed(SEED)
    enc_sd = mtb.state_dict_to_save(enc, mtb.init_(enc, gen))
    dec_sd = mtb.state_dict_to_save(dec, mtb.init_(dec, gen))
    d = os.path.join(out, "bart", "min-dalle")
    os.makedirs(d, exist_ok=True)
    torch.save(enc_sd, os.path.join(d, "encoder.pt"))
    torch.save(dec_sd, os.path.join(d, "decoder.pt"))
    return enc_sd, dec_sd


def flax_bart_tree(enc_sd, dec_sd):
    """min-dalle state dicts → dalle-mini's scanned Flax tree (the inverse of min-dalle's
    load_params: stack layers, kernel = weight.T, weight → scale, lm_head to the top)."""
    rev = {
        "pre_self_attn_layer_norm.bias": "LayerNorm_0/bias",
        "self_attn_layer_norm.weight": "LayerNorm_1/scale", "self_attn_layer_norm.bias": "LayerNorm_1/bias",
        "pre_encoder_attn_layer_norm.bias": "LayerNorm_2/bias",
        "encoder_attn_layer_norm.weight": "LayerNorm_3/scale", "encoder_attn_layer_norm.bias": "LayerNorm_3/bias",
        "glu.ln0.bias": "GLU_0/LayerNorm_0/bias", "glu.ln1.bias": "GLU_0/LayerNorm_1/bias",
        "glu.fc0.weight": "GLU_0/Dense_0/kernel", "glu.fc1.weight": "GLU_0/Dense_1/kernel",
        "glu.fc2.weight": "GLU_0/Dense_2/kernel",
    }
    for a, b in (("self_attn", "FlaxBartAttention_0"), ("encoder_attn", "FlaxBartAttention_1")):
        for w in ("q", "k", "v", "out"):
            rev[f"{a}.{w}_proj.weight"] = f"{b}/{w}_proj/kernel"
    top = {"embed_tokens.weight": "embed_tokens/embedding", "embed_positions.weight": "embed_positions/embedding",
           "layernorm_embedding.weight": "layernorm_embedding/scale",
           "layernorm_embedding.bias": "layernorm_embedding/bias", "final_ln.bias": "final_ln/bias"}
    flat = {}
    for which, sd, scan in (("encoder", enc_sd, "FlaxBartEncoderLayers"), ("decoder", dec_sd, "FlaxBartDecoderLayers")):
        layers = {}
        for k, v in sd.items():
            a = v.numpy()
            if k == "lm_head.weight":
                flat["lm_head/kernel"] = a.T.copy()
            elif k in top:
                flat[f"model/{which}/{top[k]}"] = a
            else:
                _, i, rest = k.split(".", 2)
                layers.setdefault(rev[rest], {})[int(i)] = a.T.copy() if rest.endswith("weight") and a.ndim == 2 else a
        for name, per in layers.items():
            flat[f"model/{which}/layers/{scan}/{name}"] = np.stack([per[i] for i in range(len(per))])
    tree = {}
    for k, v in flat.items():
        node = tree
        parts = k.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return tree


def flax_bytes(tree):
    old = flax.serialization.MAX_CHUNK_SIZE
    flax.serialization.MAX_CHUNK_SIZE = CHUNK
    try:
        return flax.serialization.to_bytes(tree)
    finally:
        flax.serialization.MAX_CHUNK_SIZE = old


def write_flax_bart(out, enc_sd, dec_sd):
    d = os.path.join(out, "bart", "flax")
    os.makedirs(d, exist_ok=True)
    tree = flax_bart_tree(enc_sd, dec_sd)
    data = flax_bytes(tree)
    with open(os.path.join(d, "flax_model.msgpack"), "wb") as f:
        f.write(data)
    # round trip through flax's own reader: same arrays
    back = flax.serialization.msgpack_restore(data)
    fa, fb = flax.traverse_util.flatten_dict(tree), flax.traverse_util.flatten_dict(back)
    assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    cfg = {  # the fields of dalle-mini's DalleBartConfig (configuration.py), at these sizes
        "architectures": ["eBart"], "model_type": "dallebart",
        "d_model": BART["d_model"], "encoder_layers": BART["encoder_layers"],
        "decoder_layers": BART["decoder_layers"], "encoder_attention_heads": BART["attention_heads"],
        "decoder_attention_heads": BART["attention_heads"], "encoder_ffn_dim": BART["glu_dim"],
        "decoder_ffn_dim": BART["glu_dim"], "encoder_vocab_size": BART["text_vocab_size"],
        "image_vocab_size": IMAGE_VOCAB, "image_length": BART["image_length"],
        "max_text_length": BART["text_length"], "decoder_start_token_id": IMAGE_VOCAB,
        "bos_token_id": IMAGE_VOCAB, "eos_token_id": IMAGE_VOCAB, "pad_token_id": IMAGE_VOCAB,
        "activation_function": "gelu", "use_bias": False, "use_glu": True, "ln_type": "layernorm",
        "ln_positions": "normformer", "force_ln_scale": False, "scale_embedding": False,
        "tie_word_embeddings": False, "use_final_ln_encoder": True, "use_final_ln_decoder": True,
        "use_scan": True, "sinkhorn_iters": 1, "normalize_text": True,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    chunked = sum(1 for k in fb if "__msgpack_chunked_array__" in str(k))
    return chunked


def bart_peer(enc_sd, dec_sd):
    cfg = dict(BART)
    enc, dec = gbg.build_modules(cfg, {k: v.float() for k, v in enc_sd.items()},
                                 {k: v.float() for k, v in dec_sd.items()})
    text_cfg = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "unk_token_id": 3}
    gbg.PROMPTS = PROMPTS
    rows = gbg.tokenize("models/tiny", cfg, text_cfg)
    L, d, P = BART["decoder_layers"], BART["d_model"], BART["image_length"]
    results = []
    with torch.no_grad():
        for (norm, ids, uncond, _), prompt in zip(rows, PROMPTS):
            text_ids = torch.tensor([uncond, ids])
            enc_out = enc(text_ids)
            mask = text_ids.not_equal(1)[:, None, None, :]
            for start in STARTS:
                for s in COND_SCALES:
                    state = torch.zeros(size=(L, 4, P, d))
                    tok, codes, margin = start, [], 1.0
                    for i in range(P):
                        lg, state = dec.forward(attention_mask=mask, encoder_state=enc_out,
                                                attention_state=state, prev_tokens=torch.tensor([[tok]]),
                                                token_index=torch.tensor([i]))
                        lg = lg[:, -1, :IMAGE_VOCAB]
                        g = (1 - s) * lg[0] + s * lg[1]
                        t2 = g.topk(2).values
                        margin = min(margin, float((t2[0] - t2[1]) / g.abs().max()))
                        tok = int(g.argmax())
                        codes.append(tok)
                    results.append({"prompt": prompt, "ids": ids, "start_token": start, "cond_scale": s,
                                    "tokens": codes, "min_top2_margin": margin})
    return results


# ---------------------------------------------------------------------------------------------
# VQGAN

def vj_tree(sd):
    """taming names → vqgan-jax tree (VJ convert_pt_model_to_jax rules)."""
    import re
    tree = {}
    for k, v in sd.items():
        a = v.numpy()
        k = "quantize.embedding.weight" if k == "embedding.weight" else k
        for pat in re.findall(r"\w+[.]\d+", k):
            k = k.replace(pat, "_".join(pat.split(".")))
        parts = k.split(".")
        leaf = parts[-1]
        if parts[-2] == "embedding" and parts[0] == "quantize":
            parts[-1] = "embedding"
        elif leaf == "weight" and a.ndim == 4:
            parts[-1], a = "kernel", a.transpose(2, 3, 1, 0)
        elif leaf == "weight":
            parts[-1] = "scale"
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = np.ascontiguousarray(a)
    rng = np.random.default_rng(SEED)
    tree["encoder"] = {"conv_in": {"kernel": rng.standard_normal((3, 3, 3, 32)).astype(np.float32),
                                   "bias": np.zeros(32, np.float32)},
                       "norm_out": {"scale": np.ones(32, np.float32), "bias": np.zeros(32, np.float32)}}
    tree["quant_conv"] = {"kernel": rng.standard_normal((1, 1, 32, 8)).astype(np.float32),
                          "bias": np.zeros(8, np.float32)}
    return tree


def make_vqgan(out):
    mtv.check_taming_norms(VQGAN)
    model = mtv.build(VQGAN, SEED)
    # fp16 storage (the published files are fp32; fp16 halves the fixture, and mtv.build already
    # rounded every parameter to fp16, so the values are the ones the peer runs on; the fp32 read
    # paths are covered by the tests' own .pt and msgpack writers)
    sd = {mtv.TamingDecodePath.to_file_name(k): v.detach().half().contiguous() for k, v in model.state_dict().items()}
    d = os.path.join(out, "vqgan")
    os.makedirs(os.path.join(d, "flax"), exist_ok=True)
    torch.save(sd, os.path.join(d, "detoker.pt"))
    with open(os.path.join(d, "flax", "flax_model.msgpack"), "wb") as f:
        f.write(flax_bytes(vj_tree(sd)))
    g = torch.Generator().manual_seed(SEED)
    codes = torch.randint(0, VQGAN["codebook_size"], (2, 256), generator=g)
    with torch.no_grad():
        img = model(codes)  # [2, 3, 32, 32]
    u8 = (img.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return {"codes": codes.tolist(), "image_u8": u8.tolist(),
            "float_range": [float(img.min()), float(img.max())]}


# ---------------------------------------------------------------------------------------------
# CLIP

def make_clip(out):
    model = transformers.CLIPModel(mtc.clip_config(CLIP)).eval()
    mtc.init_(model, torch.Generator().manual_seed(SEED))
    half = model.half()
    d = os.path.join(out, "clip")
    with tempfile.TemporaryDirectory() as tmp:
        half.save_pretrained(tmp)
        for sub in ("safetensors", "bin"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            shutil.copyfile(os.path.join(tmp, "config.json"), os.path.join(d, sub, "config.json"))
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(d, "safetensors", "model.safetensors"))
    # transformers 5 writes safetensors only; its 4.x save_pretrained(safe_serialization=False)
    # wrote pytorch_model.bin as torch.save(model.state_dict()), which is what this is (with the
    # position_ids buffers the older files carry)
    sd = half.state_dict()
    sd["text_model.embeddings.position_ids"] = torch.arange(CLIP["text"]["context_length"])[None]
    sd["vision_model.embeddings.position_ids"] = torch.arange((224 // 32) ** 2 + 1)[None]
    torch.save(sd, os.path.join(d, "bin", "pytorch_model.bin"))
    model = half.float()
    imgs, _ = synthetic_images(np.random.default_rng(6))
    paths = []
    for i, j in enumerate((0, 3, 5)):
        p = os.path.join(d, f"img{i}.jpg")
        Image.fromarray(imgs[j]).save(p, quality=90, subsampling=0)
        paths.append(p)
    pil_imgs = [Image.open(p).convert("RGB") for p in paths]
    proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pv = torch.from_numpy(proc(images=pil_imgs, return_tensors="np")["pixel_values"])
    ids = open_clip.get_tokenizer("ViT-B-32")(CLIP_PROMPTS)
    with torch.no_grad():
        out_ = model(input_ids=ids, attention_mask=(ids != 0).long(), pixel_values=pv.float())
    return {"prompts": CLIP_PROMPTS, "images": [os.path.basename(p) for p in paths],
            "logits_per_image": out_.logits_per_image.tolist()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/golden/convert")
    ap.add_argument("--only", choices=["bart", "vqgan", "clip"], action="append",
                    help="regenerate only these parts (the others are kept from expected.json)")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    parts = args.only or ["bart", "vqgan", "clip"]
    expected = {}
    if args.only:
        with open(os.path.join(args.out, "expected.json")) as f:
            expected = json.load(f)
    for part in parts:
        if os.path.isdir(os.path.join(args.out, part)):
            shutil.rmtree(os.path.join(args.out, part))
    expected.update({"generator": "tools/reference/gen_convert_fixtures.py",
                     "versions": {"torch": torch.__version__, "flax": flax.__version__,
                                  "transformers": transformers.__version__, "numpy": np.__version__}})
    chunked = None
    if "bart" in parts:
        enc_sd, dec_sd = make_bart(args.out)
        chunked = write_flax_bart(args.out, enc_sd, dec_sd)
        expected["bart"] = {"hparams": BART, "image_vocab_size": IMAGE_VOCAB, "runs": bart_peer(enc_sd, dec_sd)}
    if "vqgan" in parts:
        expected["vqgan"] = {"config": VQGAN, **make_vqgan(args.out)}
    if "clip" in parts:
        expected["clip"] = {"config": CLIP, **make_clip(args.out)}
    files = {}
    for root, _, names in os.walk(args.out):
        for n in sorted(names):
            p = os.path.join(root, n)
            if n != "expected.json":
                files[os.path.relpath(p, args.out)] = sha256(p)
    expected["sha256"] = dict(sorted(files.items()))
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, k)) for k in files)
    if chunked is not None:
        print("bart margins:", [round(r["min_top2_margin"], 6) for r in expected["bart"]["runs"]])
    print("vqgan float range:", expected["vqgan"]["float_range"])
    print(f"{len(files)} files, {total} bytes in {args.out}")


if __name__ == "__main__":
    main()
