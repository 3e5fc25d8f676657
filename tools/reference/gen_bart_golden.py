#!/usr/bin/env python3
"""gen_bart_golden.py — BART parity fixture: min-dalle's encoder and decoder on the tiny model.

Reads the committed tiny model (models/tiny: config.json, encoder/decoder.safetensors,
vocab.json, merges.txt), rebuilds min-dalle's DalleBartEncoder / DalleBartDecoder from those
exact F16 values (widened to fp32; loaded with strict=False as min-dalle does, so the
bias-only LayerNorm scales stay 1), runs everything in fp32 on the CPU and writes

    tests/golden/bart/tiny_golden.safetensors   (every tensor F32; ids stored as F32)
    tests/golden/bart/tiny_golden.json          (prompts, ids, columns, settings, descriptions)

Per prompt i (p{i}.*):
  text_ids [2,64]             row 0 = unconditional [0, 2, 1×62], row 1 = the prompt
                              (BartTokenizerFast, max_length 64, truncation, padding) —
                              min-dalle's row order
  encoder_out [2,64,d]        DalleBartEncoder.forward(text_ids)
  forced_tokens [257]         start token, then 256 seeded random codes in [0, 16384)
  logits_cols_{cond,uncond} [256,512]  teacher-forced logits at every step (DalleBartDecoder.
                              forward one token at a time with its own fp32 KV-cache tensor,
                              as min-dalle runs it), restricted to `logit_columns`
  logits_full_{cond,uncond} [4,lm_head_size]  all logits at steps 0, 1, 128, 255
  logit_stats [256,2,3]       [step, (cond, uncond), (max, argmax, logsumexp) over the first
                              16384 logits]
  greedy_tokens [256]         min-dalle's own sample_tokens loop with settings
                              [temperature 1, top_k 1, supercondition_factor 10], called as
                              MinDalle.generate_raw_image_stream calls it for image_count = 1
Global: logit_columns [512]   sorted, seeded, includes 0, 16383 and 16384.

Before writing, the script checks that the safetensors-built modules equal modules built the
way min-dalle builds them from .pt files (when --pt DIR is given), that greedy tokens equal
the argmax of the guided teacher-forced logits, and it reports the smallest top-1/top-2 logit
margins. After writing it reloads the fixture and the model files, rebuilds fresh modules and
checks that the encoder output and the full logits are reproduced bit for bit.

    /work/venv-ref/bin/python tools/reference/gen_bart_golden.py [--model models/tiny]
        [--out tests/golden/bart] [--pt /tmp/tiny_bart_pt]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from min_dalle.models import DalleBartDecoder, DalleBartEncoder
from safetensors.torch import load_file, save_file
from transformers import BartTokenizerFast

torch.set_grad_enabled(False)

PROMPTS = [
    "a red bicycle leaning against a brick wall",
    # 62 content tokens with the tiny vocabulary: the cond row has no padding at all
    "a small wooden cabin in a snowy forest at night with warm light glowing from the windows, "
    "a frozen lake reflecting the stars, tall pine trees covered in snow, a full moon above the "
    "dark rocky mountains, old vintage style postcard",
]
COND_SCALE = 10.0
N_COLUMNS = 512
FULL_STEPS = [0, 1, 128, 255]
SEED_COLUMNS = 1234
SEED_FORCED = 5678  # prompt i uses SEED_FORCED + i
SEED_GREEDY = 4321  # torch.manual_seed before the greedy loop (top_k 1 makes it irrelevant)
SAMPLED = 2**14  # min-dalle samples only logits[:, :2**14]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def build_modules(bart, enc_sd, dec_sd):
    """min-dalle's classes, fp32, loaded with strict=False like MinDalle.init_encoder/decoder."""
    enc = DalleBartEncoder(
        layer_count=bart["encoder_layers"],
        embed_count=bart["d_model"],
        attention_head_count=bart["attention_heads"],
        text_vocab_count=bart["text_vocab_size"],
        text_token_count=bart["text_length"],
        glu_embed_count=bart["glu_dim"],
        device="cpu",
    ).to(torch.float32).eval()
    dec = DalleBartDecoder(
        image_vocab_count=bart["lm_head_size"] - 1,
        embed_count=bart["d_model"],
        attention_head_count=bart["attention_heads"],
        glu_embed_count=bart["glu_dim"],
        layer_count=bart["decoder_layers"],
        device="cpu",
    ).to(torch.float32).eval()
    for name, m, sd in (("encoder", enc, enc_sd), ("decoder", dec, dec_sd)):
        res = m.load_state_dict(sd, strict=False)
        if res.unexpected_keys:
            sys.exit(f"{name}: unexpected keys {res.unexpected_keys}")
        bad = [k for k in res.missing_keys if not k.endswith(".weight")]
        for k in res.missing_keys:  # only the bias-only LN scales may be missing; they stay 1
            if k.endswith(".weight") and not torch.all(m.state_dict()[k] == 1):
                bad.append(k)
        if bad:
            sys.exit(f"{name}: missing keys that are not bias-only LN scales: {bad}")
    # min-dalle's image_vocab_count is the lm_head minus one row; sampling uses 2**14
    assert dec.lm_head.weight.shape[0] == bart["lm_head_size"]
    return enc, dec


def load_model(model_dir, bart):
    enc_sd = {k: v.float() for k, v in load_file(os.path.join(model_dir, "encoder.safetensors")).items()}
    dec_sd = {k: v.float() for k, v in load_file(os.path.join(model_dir, "decoder.safetensors")).items()}
    return build_modules(bart, enc_sd, dec_sd)


def tokenize(model_dir, bart, text_cfg):
    # BartTokenizerFast (transformers 5: an alias of the RobertaTokenizer tokenizers backend)
    # from a folder holding only vocab.json + merges.txt, as dalle-mini's DalleBartTokenizer
    # loads its files; our config.json is kept away from from_pretrained.
    tmp = tempfile.mkdtemp()
    try:
        shutil.copy(os.path.join(model_dir, "vocab.json"), tmp)
        shutil.copy(os.path.join(model_dir, "merges.txt"), tmp)
        tok = BartTokenizerFast.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp)
    T = bart["text_length"]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (
        text_cfg["bos_token_id"], text_cfg["pad_token_id"], text_cfg["eos_token_id"], text_cfg["unk_token_id"])
    rows = []
    for p in PROMPTS:
        assert p == p.lower() and p.isascii(), p
        norm = " " + p  # the dalle-mini normaliser's output for these already-clean prompts
        ids = tok([norm], max_length=T, truncation=True, padding="max_length")["input_ids"][0]
        assert len(ids) == T and ids[0] == tok.bos_token_id and tok.eos_token_id in ids
        assert max(ids) < bart["text_vocab_size"], "an id has no embedding row"
        uncond = tok([""], max_length=T, truncation=True, padding="max_length")["input_ids"][0]
        assert uncond == [0, 2] + [1] * (T - 2), uncond
        rows.append((norm, ids, uncond, tok.convert_ids_to_tokens(ids)))
    return rows


def teacher_forced(dec, text_ids, enc_out, forced, L, d, P):
    """DalleBartDecoder.forward one token at a time, image_count = 1 (rows: uncond, cond)."""
    attention_mask = text_ids.not_equal(1)[:, None, None, :]
    attention_state = torch.zeros(size=(L, 4, P, d))
    token_indices = torch.arange(P)
    image_tokens = forced[None, :]  # [1, 257]
    logits = []
    for i in range(P):
        lg, attention_state = dec.forward(
            attention_mask=attention_mask,
            encoder_state=enc_out,
            attention_state=attention_state,
            prev_tokens=image_tokens[:, [i]],
            token_index=token_indices[[i]],
        )
        logits.append(lg[:, -1].clone())
    return torch.stack(logits)  # [256, 2 (uncond, cond), V]


def greedy(dec, text_ids, enc_out, start, L, d, P, seed):
    """The calls of MinDalle.generate_raw_image_stream for image_count = 1 (fp32, CPU)."""
    image_count = 1
    expanded_indices = [0] * image_count + [1] * image_count
    text_tokens = text_ids[expanded_indices]
    encoder_state = enc_out[expanded_indices]
    attention_mask = text_tokens.not_equal(1)[:, None, None, :]
    attention_state = torch.zeros(size=(L, image_count * 4, P, d))
    image_tokens = torch.full((image_count, P + 1), start, dtype=torch.long)
    if seed > 0:
        torch.manual_seed(seed)
    token_indices = torch.arange(P)
    settings = torch.tensor([1.0, 1, COND_SCALE], dtype=torch.float32)  # temperature, top_k, s
    for i in range(P):
        image_tokens[:, i + 1], attention_state = dec.sample_tokens(
            settings=settings,
            attention_mask=attention_mask,
            encoder_state=encoder_state,
            attention_state=attention_state,
            prev_tokens=image_tokens[:, [i]],
            token_index=token_indices[[i]],
        )
    return image_tokens[0, 1:].clone()


def top2_margin(x):
    """Smallest (top1 - top2) / max|x| over the rows of x [N, V]."""
    t = x.topk(2, dim=-1).values
    return float(((t[:, 0] - t[:, 1]) / x.abs().amax(-1)).min())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/tiny")
    ap.add_argument("--out", default="tests/golden/bart")
    ap.add_argument("--pt", help="also check against the min-dalle .pt files in this folder")
    args = ap.parse_args()

    cfg = load_config(args.model)
    bart = cfg["bart"]
    L, d, P, T = bart["decoder_layers"], bart["d_model"], bart["image_length"], bart["text_length"]
    V, start = bart["lm_head_size"], bart["start_token"]
    assert P == 256 and T == 64 and bart["image_vocab_size"] == SAMPLED and 0 <= start < V
    enc, dec = load_model(args.model, bart)

    if args.pt:  # the way MinDalle builds them: fp16 .pt → load_state_dict(strict=False)
        pe, pd = build_modules(bart, torch.load(os.path.join(args.pt, "encoder.pt")),
                               torch.load(os.path.join(args.pt, "decoder.pt")))
        for a, b in ((enc, pe), (dec, pd)):
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys()
            for k in sa:
                assert torch.equal(sa[k], sb[k]), f"{k} differs between the .pt and the safetensors"
        print(f"modules from {args.pt}/*.pt and {args.model}/*.safetensors: identical parameters")

    gen_cols = torch.Generator().manual_seed(SEED_COLUMNS)
    fixed = torch.tensor([0, SAMPLED - 1, SAMPLED])
    pool = torch.tensor([c for c in range(V) if c not in fixed.tolist()])
    cols = torch.cat([fixed, pool[torch.randperm(len(pool), generator=gen_cols)[: N_COLUMNS - 3]]])
    cols = cols.sort().values
    assert len(cols) == N_COLUMNS

    rows = tokenize(args.model, bart, cfg["text"])
    tensors = {"logit_columns": cols.float()}
    meta_prompts = []
    worst_margin_tf, worst_margin_cfg = 1.0, 1.0
    for i, (norm, ids, uncond, toks) in enumerate(rows):
        text_ids = torch.tensor([uncond, ids], dtype=torch.long)
        enc_out = enc.forward(text_ids)
        g = torch.Generator().manual_seed(SEED_FORCED + i)
        forced = torch.cat([torch.tensor([start]), torch.randint(0, SAMPLED, (P,), generator=g)])
        lg = teacher_forced(dec, text_ids, enc_out, forced, L, d, P)  # [256, 2 (uncond, cond), V]
        cond, unc = lg[:, 1], lg[:, 0]
        gt = greedy(dec, text_ids, enc_out, start, L, d, P, SEED_GREEDY + i)

        # cross-check: greedy tokens = argmax of the guided logits when those tokens are forced
        lg_g = teacher_forced(dec, text_ids, enc_out, torch.cat([torch.tensor([start]), gt]), L, d, P)
        guided = lg_g[:, 0, :SAMPLED] * (1 - COND_SCALE) + lg_g[:, 1, :SAMPLED] * COND_SCALE
        assert torch.equal(guided.argmax(-1), gt), "greedy tokens are not the guided argmax"
        worst_margin_cfg = min(worst_margin_cfg, top2_margin(guided))

        stats = torch.zeros(P, 2, 3)
        for b, x in enumerate((cond, unc)):
            xs = x[:, :SAMPLED]
            stats[:, b, 0] = xs.max(-1).values
            stats[:, b, 1] = xs.argmax(-1).float()
            stats[:, b, 2] = torch.logsumexp(xs, -1)
            worst_margin_tf = min(worst_margin_tf, top2_margin(xs))
        p = f"p{i}."
        tensors[p + "text_ids"] = text_ids.float()
        tensors[p + "encoder_out"] = enc_out.float().contiguous()
        tensors[p + "forced_tokens"] = forced.float()
        tensors[p + "logits_cols_cond"] = cond[:, cols].contiguous()
        tensors[p + "logits_cols_uncond"] = unc[:, cols].contiguous()
        tensors[p + "logits_full_cond"] = cond[FULL_STEPS].contiguous()
        tensors[p + "logits_full_uncond"] = unc[FULL_STEPS].contiguous()
        tensors[p + "logit_stats"] = stats
        tensors[p + "greedy_tokens"] = gt.float()
        n_content = sum(1 for t in ids if t not in (0, 1, 2))
        print(f"p{i}: {n_content} content tokens, ids {ids[:n_content + 2]}")
        print(f"    encoder_out std {enc_out.std():.3f}; logits std cond {cond.std():.3f} "
              f"uncond {unc.std():.3f}; greedy: {len(set(gt.tolist()))} distinct tokens, first {gt[:8].tolist()}")
        meta_prompts.append({"prompt": PROMPTS[i], "normalized": norm, "ids": ids, "tokens": toks,
                             "uncond_ids": uncond, "content_tokens": n_content,
                             "forced_seed": SEED_FORCED + i, "greedy_seed": SEED_GREEDY + i})
    print(f"smallest top-1/top-2 margin relative to max|logit|: teacher-forced {worst_margin_tf:.3g}, "
          f"guided greedy {worst_margin_cfg:.3g}")

    os.makedirs(args.out, exist_ok=True)
    st_path = os.path.join(args.out, "tiny_golden.safetensors")
    save_file(tensors, st_path, metadata={"generator": "tools/reference/gen_bart_golden.py"})
    desc = {
        "logit_columns": "[512] sorted lm_head columns kept in logits_cols_* (seeded; includes 0, 16383, 16384)",
        "p{i}.text_ids": "[2,64] row 0 uncond [0,2,1x62], row 1 prompt ids (min-dalle row order)",
        "p{i}.encoder_out": f"[2,64,{d}] min-dalle DalleBartEncoder output (after final_ln), rows as text_ids",
        "p{i}.forced_tokens": f"[257] start token {start} then 256 seeded random codes in [0,16384); "
                              "step t feeds forced_tokens[t] at position t",
        "p{i}.logits_cols_cond": "[256,512] teacher-forced logits of the cond row at step t, columns logit_columns",
        "p{i}.logits_cols_uncond": "[256,512] same for the uncond row",
        "p{i}.logits_full_cond": f"[4,{V}] all logits of the cond row at steps {FULL_STEPS}",
        "p{i}.logits_full_uncond": f"[4,{V}] same for the uncond row",
        "p{i}.logit_stats": "[256,2,3] [step][0 = cond, 1 = uncond][max, argmax, logsumexp] over logits[:16384]",
        "p{i}.greedy_tokens": "[256] min-dalle sample_tokens loop, temperature 1, top_k 1, supercondition_factor "
                              f"{COND_SCALE}: guided greedy codes (start token {start} excluded)",
    }
    meta = {
        "description": "BART parity fixture: min-dalle DalleBartEncoder/DalleBartDecoder in fp32 on the "
                       "tiny random model (F16 weights widened exactly). All tensors F32; ids stored as F32.",
        "generator": "tools/reference/gen_bart_golden.py",
        "model": {"dir": args.model, "name": cfg.get("name"), "bart": bart,
                  "encoder_sha256": sha256(os.path.join(args.model, "encoder.safetensors")),
                  "decoder_sha256": sha256(os.path.join(args.model, "decoder.safetensors")),
                  "vocab_sha256": sha256(os.path.join(args.model, "vocab.json")),
                  "merges_sha256": sha256(os.path.join(args.model, "merges.txt"))},
        "peers": {"torch": torch.__version__, "min_dalle": "0.4.11", "transformers": __import__("transformers").__version__},
        "tokenizer": "transformers BartTokenizerFast on vocab.json/merges.txt, max_length 64, truncation, "
                     "padding max_length; prompt = ' ' + text (already normalized)",
        "prompts": meta_prompts,
        "cond_scale": COND_SCALE,
        "greedy_settings": {"temperature": 1.0, "top_k": 1, "supercondition_factor": COND_SCALE,
                            "image_count": 1},
        "logit_columns": cols.tolist(),
        "full_steps": FULL_STEPS,
        "logit_stats_layout": ["max", "argmax", "logsumexp"],
        "branches": {"cond": "text_ids row 1", "uncond": "text_ids row 0"},
        "min_top2_margin_rel": {"teacher_forced": worst_margin_tf, "guided_greedy": worst_margin_cfg},
        "metric": "max relative error = max|ours - ref| / max|ref| per tensor (per step for logits), "
                  "bar 1e-4; greedy tokens identical",
        "tensors": desc,
    }
    with open(os.path.join(args.out, "tiny_golden.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")

    # sanity check: reload fixture + model files, rebuild fresh modules, reproduce bit for bit
    gold = load_file(st_path)
    enc2, dec2 = load_model(args.model, bart)
    for i in range(len(PROMPTS)):
        p = f"p{i}."
        ids = gold[p + "text_ids"].long()
        e2 = enc2.forward(ids)
        assert torch.equal(e2, gold[p + "encoder_out"]), f"p{i}: encoder output not reproduced bit for bit"
        lg2 = teacher_forced(dec2, ids, e2, gold[p + "forced_tokens"].long(), L, d, P)
        assert torch.equal(lg2[FULL_STEPS, 1], gold[p + "logits_full_cond"]), f"p{i}: cond logits differ"
        assert torch.equal(lg2[FULL_STEPS, 0], gold[p + "logits_full_uncond"]), f"p{i}: uncond logits differ"
        assert torch.equal(lg2[:, 1][:, gold["logit_columns"].long()], gold[p + "logits_cols_cond"])
    size = os.path.getsize(st_path)
    print(f"reloaded {st_path} ({size} bytes) and the model files: encoder output and logits reproduced bit for bit")


if __name__ == "__main__":
    main()
