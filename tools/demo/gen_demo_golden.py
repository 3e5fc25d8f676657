#!/usr/bin/env python3
"""gen_demo_golden.py — parity fixtures for the trained demo model (models/demo) from the peers.

The trained weights, exactly as committed (F16, run in fp32), go through the peer classes:
  * min-dalle's DalleBartEncoder / DalleBartDecoder (its own forward, batch [uncond, cond],
    its fp32 attention_state KV cache, one token per call, as MinDalle runs it);
  * taming-transformers' Decoder along VQModel.decode_code (train_vqgan.DecodePath);
  * transformers' CLIPModel with CLIPImageProcessorPil preprocessing and open_clip's tokenizer.
tests/demo/test_demo_golden.c then runs our C code on the same inputs. A training module
that drifted from the architecture (or a C path that is not config-general) fails there.

Fixture (tests/demo/golden/demo_golden.safetensors, all F32; ids exact):
  p{i}.text_ids [2, T]            row 0 = uncond [0, 2, 1…], row 1 = prompt i (HF BartTokenizerFast)
  p{i}.encoder_out [2, T, d]      min-dalle encoder (after final_ln)
  p{i}.greedy_tokens [P]          guided greedy codes (argmax of (1−s)·uncond + s·cond over the
                                  image codes, s = COND_SCALE) from min-dalle's decoder
  p{i}.logit_steps [S]            the steps whose logits are kept (logit_steps(): the first 16,
                                  every 16th and the last; the C test still decodes every step and
                                  checks the guided argmax and the greedy codes at all P)
  p{i}.logits_cond / _uncond [S, lm_head]  those steps' logits along that greedy path
  vq.codes [3, P]                 grids: the two greedy images and one world image's codes
  vq.image_f32 [3, R, R, 3]       taming decoder output before clipping (NHWC)
  vq.image_u8 [3, R, R, 3]        (clamp(0, 1)·255).to(uint8)
  clip.images [5, R, R, 3]        vq.image_u8 + two rendered world images (uint8 as F32)
  clip.pixel_values [5, S, S, 3]  CLIPImageProcessorPil (NHWC)
  clip.input_ids [3, 77]          open_clip tokenizer (0-padded)
  clip.image_embeds_raw [5, E], clip.text_embeds_raw [3, E], clip.logits_per_image [5, 3]
tests/demo/golden/demo_golden.json: prompts, ids, margins, versions, sha256 of the model files.

    .venv-demo/bin/python tools/demo/gen_demo_golden.py [--model models/demo] [--out tests/demo/golden]
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import open_clip
import torch
import transformers
from min_dalle.models import DalleBartDecoder, DalleBartEncoder
from PIL import Image
from safetensors.numpy import save_file
from safetensors.torch import load_file
from transformers import CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import patch_codes  # noqa: E402
import world  # noqa: E402
from make_tiny_clip import clip_config  # noqa: E402
from train_bart import encode_text, tokenizer  # noqa: E402
from train_vqgan import DecodePath  # noqa: E402

torch.set_grad_enabled(False)
PROMPTS = ["a red square on a blue background", "a purple triangle on a white background"]
CLIP_PROMPTS = ["a red square on a blue background", "a yellow circle on a black background",
                "two green squares at the top on a black background"]
COND_SCALE = 4.0


def logit_steps(P):
    """the decode steps whose full logits the fixture keeps (all of them would be 31 MB at 256
    steps × 7,681 logits × 2 branches × 2 prompts)"""
    return [t for t in range(P) if t < 16 or t % 16 == 0 or t == P - 1]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load32(path):
    return {k: v.float() for k, v in load_file(path).items()}


def bart(model_dir, cfg, out, meta):
    b = cfg["bart"]
    enc = DalleBartEncoder(layer_count=b["encoder_layers"], embed_count=b["d_model"],
                           attention_head_count=b["attention_heads"], text_vocab_count=b["text_vocab_size"],
                           text_token_count=b["text_length"], glu_embed_count=b["glu_dim"], device="cpu").eval()
    dec = DalleBartDecoder(image_vocab_count=b["image_vocab_size"], embed_count=b["d_model"],
                           attention_head_count=b["attention_heads"], glu_embed_count=b["glu_dim"],
                           layer_count=b["decoder_layers"], device="cpu").eval()
    esd = load32(os.path.join(model_dir, "encoder.safetensors"))
    dsd = load32(os.path.join(model_dir, "decoder.safetensors"))
    pos = dsd["embed_positions.weight"]  # [P, d]; min-dalle allocates 256 rows
    full = torch.zeros(dec.embed_positions.weight.shape)
    full[: pos.shape[0]] = pos
    dsd["embed_positions.weight"] = full
    for m, sd in ((enc, esd), (dec, dsd)):
        missing, unexpected = m.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        assert all(k.endswith(".weight") and ("ln" in k or "layer_norm" in k) for k in missing), missing
    tok = tokenizer(model_dir)
    T, P, V, L = b["text_length"], b["image_length"], b["image_vocab_size"], b["lm_head_size"]
    margins = []
    for i, prompt in enumerate(PROMPTS):
        ids = torch.from_numpy(encode_text(tok, ["", prompt], T))  # [uncond, cond]
        enc_out = enc(ids)
        state = torch.zeros(b["decoder_layers"], 4, 256, b["d_model"])
        mask = ids.not_equal(1)[:, None, None, :]
        prev = torch.tensor([[b["start_token"]]])
        toks, lc, lu = [], [], []
        for t in range(P):
            logits, state = dec(attention_mask=mask, encoder_state=enc_out, attention_state=state,
                                prev_tokens=prev, token_index=torch.tensor([t]))
            u, c = logits[0, -1], logits[1, -1]
            g = (1 - COND_SCALE) * u[:V] + COND_SCALE * c[:V]
            top2 = torch.topk(g, 2).values
            margins.append(float((top2[0] - top2[1]) / g.abs().max()))
            nxt = int(g.argmax())
            toks.append(nxt)
            lc.append(c.numpy().copy())
            lu.append(u.numpy().copy())
            prev = torch.tensor([[nxt]])
        out[f"p{i}.text_ids"] = ids.numpy().astype(np.float32)
        out[f"p{i}.encoder_out"] = enc_out.numpy().astype(np.float32)
        out[f"p{i}.greedy_tokens"] = np.array(toks, dtype=np.float32)
        keep = logit_steps(P)
        out[f"p{i}.logit_steps"] = np.array(keep, dtype=np.float32)
        out[f"p{i}.logits_cond"] = np.stack(lc)[keep].astype(np.float32)
        out[f"p{i}.logits_uncond"] = np.stack(lu)[keep].astype(np.float32)
        meta["prompts"].append({"prompt": prompt, "ids": ids[1].tolist(), "greedy_tokens": toks})
        assert len(lc[0]) == L
    meta["bart"] = {"cond_scale": COND_SCALE, "min_top2_margin_rel": min(margins)}
    print(f"bart: smallest guided top-1/top-2 margin (relative) {min(margins):.3g}")
    return [out["p0.greedy_tokens"], out["p1.greedy_tokens"]]


def vqgan(model_dir, cfg, out, grids):
    m = DecodePath(cfg["vqgan"]).eval()
    sd = load32(os.path.join(model_dir, "vqgan.safetensors"))
    sd = {("quantize.embedding.weight" if k == "embedding.weight" else k): v for k, v in sd.items()}
    m.load_state_dict(sd, strict=True)
    res = cfg["vqgan"]["resolution"]
    world_img = world.render(world.sample(424242, train=False)[0], world.geometry(res))
    codes = np.stack([g.astype(np.int64) for g in grids] + [patch_codes.codec(res).encode(world_img)])
    img = m(torch.from_numpy(codes)).permute(0, 2, 3, 1).contiguous()
    u8 = (img.clamp(0, 1) * 255).to(torch.uint8)
    out["vq.codes"] = codes.astype(np.float32)
    out["vq.image_f32"] = img.numpy().astype(np.float32)
    out["vq.image_u8"] = u8.numpy().astype(np.float32)
    print(f"vqgan: output range {float(img.min()):.3f} … {float(img.max()):.3f}")
    return u8.numpy()


def clip(model_dir, cfg, out, decoded, meta):
    model = CLIPModel(clip_config(cfg["clip"])).eval()
    sd = load32(os.path.join(model_dir, "clip.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    geo = world.geometry(cfg["vqgan"]["resolution"])
    imgs = np.concatenate([decoded, np.stack([world.render(world.sample(s, train=False)[0], geo) for s in (7, 8)])])
    S = cfg["clip"]["vision"]["image_size"]
    proc = CLIPImageProcessorPil(size={"shortest_edge": S}, crop_size={"height": S, "width": S})
    px = proc(images=[Image.fromarray(a) for a in imgs], return_tensors="np")["pixel_values"]
    ids = open_clip.get_tokenizer("ViT-B-32")(CLIP_PROMPTS)
    pv = torch.from_numpy(px).float()
    img_raw = model.visual_projection(model.vision_model(pixel_values=pv).pooler_output)
    txt_raw = model.text_projection(model.text_model(input_ids=ids.long()).pooler_output)
    o = model(input_ids=ids.long(), pixel_values=pv)
    out["clip.images"] = imgs.astype(np.float32)
    out["clip.pixel_values"] = np.ascontiguousarray(px.transpose(0, 2, 3, 1)).astype(np.float32)
    out["clip.input_ids"] = ids.numpy().astype(np.float32)
    out["clip.image_embeds_raw"] = img_raw.numpy().astype(np.float32)
    out["clip.text_embeds_raw"] = txt_raw.numpy().astype(np.float32)
    out["clip.logits_per_image"] = o.logits_per_image.numpy().astype(np.float32)
    meta["clip"] = {"prompts": CLIP_PROMPTS, "logit_scale": float(model.logit_scale.exp()),
                    "logits_per_image": o.logits_per_image.numpy().round(4).tolist()}
    print("clip logits_per_image:\n", o.logits_per_image.numpy().round(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--out", default="tests/demo/golden")
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    out, meta = {}, {"prompts": []}
    grids = bart(args.model, cfg, out, meta)
    decoded = vqgan(args.model, cfg, out, grids)
    clip(args.model, cfg, out, decoded, meta)
    meta["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                        "open_clip": open_clip.__version__, "min_dalle": "0.4.11", "taming-transformers": "0.0.1"}
    meta["model_sha256"] = {f: sha256(os.path.join(args.model, f)) for f in sorted(os.listdir(args.model))
                            if f.endswith(".safetensors") or f == "config.json"}
    os.makedirs(args.out, exist_ok=True)
    # C order: astype keeps a transposed view's Fortran layout (logits_per_image is one)
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, os.path.join(args.out, "demo_golden.safetensors"))
    with open(os.path.join(args.out, "demo_golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}/demo_golden.safetensors ({len(out)} tensors)")


if __name__ == "__main__":
    main()
