#!/usr/bin/env python3
"""train_bart.py — trains the demo DalleBart (text → 16×16 VQGAN codes) on the shapes world.

The network is min-dalle's own DalleBartEncoder / DalleBartDecoder classes (GLU feed-forward, NormFormer LayerNorms, bias-free projections, learned absolute positions,
no √d embedding scale), so the trained state dicts are min-dalle state dicts. Teacher forcing
calls min-dalle's own DecoderLayer.forward with a [B, 256] token_index (its causal multi-token
path); only DalleBartDecoder.forward's cond/uncond row duplication is skipped. The LayerNorms
that are bias-only in the published checkpoints (pre_self_attn_layer_norm,
pre_encoder_attn_layer_norm, glu.ln0, glu.ln1, final_ln) keep γ = 1 frozen and are saved
without a weight, as in the published files.

Sizes (HP below): d_model 128, 4 heads, GLU 256, 2 encoder + 3 decoder layers, 32 text
positions, 256 image positions (as DALL·E mini: min-dalle's 256 position rows), image
vocabulary = the VQGAN's codes (patch_codes.CODEBOOK, 7680), BOS = that number (dalle-mini's
convention: image_vocab_size is the start token), lm_head one more.

Tied code attributes: the decoder's image-token embedding and lm_head are trained as
Φ·A_in and Φ·A_out, Φ = patch_codes.features() (each code's pure colour, or shape colour +
background colour + cut-out mask), A learned [K, 128] tables; the exported weights are the
products, full [codes + 1, 128] matrices in min-dalle's layout. A code that never occurs in
training (the edge of a purple triangle) gets the embedding and logit its attributes give it.

Data: world.sample(seed, train=True) for seeds SEED_BASE + i, captions tokenised with the BPE
trained on world captions (train_bpe(), tools/reference/train_bpe.py's recipe, dalle-mini's
ids: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last), images → codes with patch_codes.encode_batch
(the demo's exact image tokenizer; prepare step, cached). Caption dropout: 10 % of captions become the empty prompt
([0, 2, 1…], the unconditional row our C code and min-dalle build) so classifier-free guidance
works. Cross-entropy over the image codes, estimated on the rows of the code grid that hold
a shape and a quarter of the other positions (sampled_loss: unbiased, half the work), matrix
products in bfloat16 autocast (fp32 weights and softmax); AdamW, warm-up + cosine over the
planned steps (a resumed run continues the same schedule, see --resume). --accum K splits a
step's captions into K equal parts with a backward pass each: the same step (the mean of the
parts' means), with the memory of a part.

    .venv-demo/bin/python tools/demo/train_bart.py prepare --out build/demo_train/bart
    .venv-demo/bin/python tools/demo/train_bart.py train --out build/demo_train/bart --steps 1600 --bs 128
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from min_dalle.models import DalleBartDecoder, DalleBartEncoder

torch.set_grad_enabled(True)  # importing min_dalle turns autograd off globally

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import patch_codes  # noqa: E402
import runstate  # noqa: E402
import world  # noqa: E402

HP = {
    "d_model": 128,
    "heads": 4,
    "glu_dim": 256,
    "encoder_layers": 2,
    "decoder_layers": 3,
    "text_length": 32,
    "image_length": patch_codes.SIDE ** 2,
    "image_vocab_size": patch_codes.CODEBOOK,
}
# the loss samples this share of the positions in grid rows without any shape (sampled_loss)
KEEP_FLAT = 0.25
BPE_VOCAB = 500  # including <mask>
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
SEED = 20260129
SEED_BASE = 20_000_000
BIAS_ONLY = ("pre_self_attn_layer_norm", "pre_encoder_attn_layer_norm", "glu.ln0", "glu.ln1", "final_ln")


def is_bias_only_ln(name):
    """name of a LayerNorm module (no .weight suffix)"""
    return name == "final_ln" or any(name.endswith("." + b) for b in BIAS_ONLY if b != "final_ln")


# ----------------------------------------------------------------------------------------------
# tokenizer


def train_bpe(out_dir, n=60000):
    from tokenizers import ByteLevelBPETokenizer

    def corpus():
        for i in range(n):
            yield " " + world.sample(SEED_BASE + 10_000_000 + i, train=True)[1]
        for w in world.COLORS + world.SHAPES + list(world.PLURAL.values()) + ["two", "background"]:
            yield w

    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(corpus(), vocab_size=BPE_VOCAB - 1, min_frequency=2,
                            special_tokens=SPECIALS, show_progress=False)
    vocab = tok.get_vocab()
    assert [vocab[s] for s in SPECIALS] == [0, 1, 2, 3]
    vocab["<mask>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_model(tmp)
        with open(os.path.join(tmp, "merges.txt"), encoding="utf-8") as f:
            merges = f.read()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(merges)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
    return len(vocab)


def tokenizer(tok_dir):
    from transformers import BartTokenizerFast
    return BartTokenizerFast(vocab=os.path.join(tok_dir, "vocab.json"),
                             merges=os.path.join(tok_dir, "merges.txt"))


def encode_text(tok, captions, length):
    """captions as dalle-mini's normaliser leaves them (lower case, one leading space)."""
    enc = tok([" " + c if c else "" for c in captions], max_length=length, truncation=True,
              padding="max_length", return_tensors="np")
    return enc["input_ids"].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# model


def build(text_vocab, hp=HP):
    """min-dalle's encoder and decoder at the sizes hp gives (HP, or a checkpoint's "hp")"""
    enc = DalleBartEncoder(layer_count=hp["encoder_layers"], embed_count=HP["d_model"],
                           attention_head_count=HP["heads"], text_vocab_count=text_vocab,
                           text_token_count=HP["text_length"], glu_embed_count=HP["glu_dim"], device="cpu")
    dec = DalleBartDecoder(image_vocab_count=HP["image_vocab_size"], embed_count=HP["d_model"],
                           attention_head_count=HP["heads"], glu_embed_count=HP["glu_dim"],
                           layer_count=HP["decoder_layers"], device="cpu")
    return enc, dec


def freeze_bias_only(module):
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.LayerNorm) and is_bias_only_ln(name):
            with torch.no_grad():
                m.weight.fill_(1.0)
            m.weight.requires_grad_(False)


def init_(module, gen):
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)


def encoder_forward(enc, text_ids):
    """min-dalle's DalleBartEncoder.forward for any batch size (its own forward fixes the batch
    at 2 through its pose_tokens buffer): the same modules in the same order."""
    mask = text_ids.not_equal(1)[:, None, None, :]
    pos = torch.arange(text_ids.shape[1]).unsqueeze(0)
    x = enc.embed_tokens(text_ids) + enc.embed_positions(pos)
    x = enc.layernorm_embedding(x)
    for layer in enc.layers:
        x = layer(x, mask)
    return enc.final_ln(x)


class TiedCodes(torch.nn.Module):
    """image-token embedding and lm_head as attribute sums: W = Φ · A, Φ [V + 1, K] fixed."""

    def __init__(self, d_model, gen):
        super().__init__()
        self.register_buffer("phi", torch.from_numpy(patch_codes.features()))
        K = self.phi.shape[1]
        self.a_in = torch.nn.Parameter(torch.randn(K, d_model, generator=gen) * 0.02)
        self.a_out = torch.nn.Parameter(torch.randn(K, d_model, generator=gen) * 0.02)

    def weights(self):
        """(embedding [V + 1, D], lm_head [V + 1, D])"""
        return self.phi @ self.a_in, self.phi @ self.a_out

    def store(self, dec):
        """write the products into min-dalle's embed_tokens / lm_head"""
        w_in, w_out = self.weights()
        with torch.no_grad():
            dec.embed_tokens.weight.copy_(w_in)
            dec.lm_head.weight.copy_(w_out)


def decoder_hidden(dec, tied, enc_state, text_ids, prev_tokens):
    """Teacher-forced final hidden states [B, T, D] through min-dalle's own layers (causal
    multi-token path) and the lm_head [V + 1, D]; the token embedding and lm_head are tied's
    products (the same arithmetic as dec.embed_tokens / dec.lm_head once tied.store(dec) has run)."""
    B, T = prev_tokens.shape
    w_in, w_out = tied.weights()
    token_index = torch.arange(T).unsqueeze(0).repeat(B, 1)
    mask = text_ids.not_equal(1)[:, None, None, :]
    x = F.embedding(prev_tokens, w_in) + dec.embed_positions(token_index)
    x = dec.layernorm_embedding(x)
    dummy = torch.zeros(1)
    for layer in dec.layers:
        x, _ = layer(x, enc_state, dummy, mask, token_index)
    return dec.final_ln(x), w_out


def decoder_logits(dec, tied, enc_state, text_ids, prev_tokens):
    """Teacher-forced logits [B, T, V + 1]"""
    hidden, w_out = decoder_hidden(dec, tied, enc_state, text_ids, prev_tokens)
    return hidden @ w_out.T


def sampled_loss(hidden, w_out, tgt, gen, keep):
    """The mean cross-entropy over all B × T image positions, estimated from a subset of them:
    every position of a grid row that holds part of a shape (a cut-out code; the decisions
    where a shape starts and how it goes on) and each other position with probability `keep`,
    weighted 1 / keep. The estimate and its gradient are unbiased for the full mean (the
    weights undo the sampling), and the lm_head and softmax — most of a step's work — run
    on about half of the positions. hidden [B, T, D], w_out [V + 1, D], tgt [B, T]."""
    B, T = tgt.shape
    side = patch_codes.SIDE
    shape_row = (tgt >= patch_codes.NC).reshape(B, side, side).any(-1, keepdim=True)
    shape_row = shape_row.expand(B, side, side).reshape(B, T)
    sel = shape_row | (torch.rand(B, T, generator=gen) < keep)
    weight = torch.where(shape_row[sel], 1.0, 1.0 / keep)
    ce = F.cross_entropy((hidden[sel] @ w_out.T).float(), tgt[sel], reduction="none")
    return (ce * weight).sum() / (B * T)


def export_state_dicts(enc, dec):
    """min-dalle .pt-style flat dicts (fp32), bias-only LN weights dropped, image_length positions."""
    def sd(module):
        out = {}
        for k, v in module.state_dict().items():
            if k.endswith(".weight") and is_bias_only_ln(k[: -len(".weight")]):
                assert torch.all(v == 1), k
                continue
            out[k] = v.detach().clone()
        return out
    e, d = sd(enc), sd(dec)
    d["embed_positions.weight"] = d["embed_positions.weight"][: HP["image_length"]].clone()
    return e, d


# ----------------------------------------------------------------------------------------------


def cmd_prepare(args):
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    nv = train_bpe(args.out)
    print(f"BPE: {nv} ids", flush=True)
    tok = tokenizer(args.out)
    N = args.n
    codes = np.zeros((N, HP["image_length"]), dtype=np.int16)  # codes < 2^15
    caps = []
    t0 = time.time()
    with torch.no_grad():
        for s in range(0, N, 256):
            scenes = [world.sample(SEED_BASE + i, train=True) for i in range(s, min(N, s + 256))]
            caps += [c for _, c, _ in scenes]
            codes[s:s + len(scenes)] = patch_codes.encode_batch(np.stack([world.render(sc) for sc, _, _ in scenes]))
            if s % 5120 == 0:
                print(f"encoded {s + len(scenes)} / {N} in {time.time() - t0:.0f}s", flush=True)
    ids = encode_text(tok, caps, HP["text_length"])
    lens = (ids != 1).sum(1)
    print(f"caption tokens: max {lens.max()} mean {lens.mean():.1f}; codes used {len(np.unique(codes))}")
    assert ids[:, -1].max() in (1, 2), "a caption was truncated"
    with open(os.path.join(args.out, "captions.txt"), "w") as f:
        f.write("\n".join(caps) + "\n")
    tmp = os.path.join(args.out, "data.tmp.npz")  # data.npz appears whole or not at all
    np.savez_compressed(tmp, ids=ids, codes=codes)
    os.replace(tmp, os.path.join(args.out, "data.npz"))


def more_threads(path):
    """the thread count a --threads-file asks for, once it exists and differs from the current one"""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        n = int(f.read().strip() or 0)
    return n if n > 0 and n != torch.get_num_threads() else None


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = np.load(os.path.join(args.out, "data.npz"))
    ids_all = torch.from_numpy(data["ids"])
    codes_all = torch.from_numpy(data["codes"].astype(np.int64))
    N = len(ids_all)
    with open(os.path.join(args.out, "vocab.json")) as f:
        text_vocab = len(json.load(f)) - 1  # <mask> has no row (mini style)
    hp = dict(HP, encoder_layers=args.encoder_layers)
    enc, dec = build(text_vocab, hp)
    gen = torch.Generator().manual_seed(args.seed)
    init_(enc, gen)
    init_(dec, gen)
    freeze_bias_only(enc)
    freeze_bias_only(dec)
    tied = TiedCodes(HP["d_model"], gen)
    for m in (dec.embed_tokens, dec.lm_head):
        m.weight.requires_grad_(False)  # trained through tied
    params = [p for p in list(enc.parameters()) + list(dec.parameters()) + list(tied.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.wd)
    ck = runstate.last(args.out, "bart") if args.resume else None
    if ck:
        t = ck["train"]
        enc.load_state_dict(t["enc"])
        dec.load_state_dict(t["dec"])
        tied.load_state_dict(t["tied"])
        opt.load_state_dict(t["opt"])
        gen.set_state(t["gen"])
        print(f"resumed at step {ck['step']}", flush=True)
    run = runstate.Run(args.out, "bart", ["step", "seconds", "loss", "lr"], args.ckpt_min, ck)
    uncond = torch.full((HP["text_length"],), 1, dtype=torch.long)
    uncond[0], uncond[1] = 0, 2
    bos = HP["image_vocab_size"]
    step, ema = run.start, None

    def checkpoint():
        """the exported state dicts (export.py reads them) and everything a resume needs"""
        tied.store(dec)
        e, d = export_state_dicts(enc, dec)
        run.checkpoint({"encoder": e, "decoder": d, "tied": tied.state_dict(), "hp": hp, "text_vocab": text_vocab,
                        "train": {"enc": enc.state_dict(), "dec": dec.state_dict(), "tied": tied.state_dict(),
                                  "opt": opt.state_dict(), "gen": gen.get_state()}}, step)
        print(f"step {step}: checkpoint", flush=True)

    enc.train()
    dec.train()
    while step < args.steps:
        idx = torch.randint(0, N, (args.bs,), generator=gen)
        text = ids_all[idx].clone()
        drop = torch.rand(args.bs, generator=gen) < args.drop
        text[drop] = uncond
        tgt = codes_all[idx]
        prev = torch.cat([torch.full((args.bs, 1), bos), tgt[:, :-1]], 1)
        lr = runstate.lr_at(args.lr, step, args.steps, args.warmup, 0.03)
        for g in opt.param_groups:
            g["lr"], g["weight_decay"] = lr, args.wd
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for part in torch.arange(args.bs).chunk(args.accum):  # equal parts: the mean of their means
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                hidden, w_out = decoder_hidden(dec, tied, encoder_forward(enc, text[part]), text[part], prev[part])
                part_loss = sampled_loss(hidden, w_out, tgt[part], gen, args.keep) / args.accum
            part_loss.backward()
            loss += part_loss.detach()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 10 == 0:
            run.row([step, run.seconds(), f"{loss.item():.5f}", f"{lr:.2e}"])
            threads = more_threads(args.threads_file)
            if threads:
                torch.set_num_threads(threads)
                print(f"step {step}: {threads} threads from now on", flush=True)
        if step % 100 == 0:
            print(f"step {step} t {run.seconds():.0f}s loss {loss.item():.4f} ema {ema:.4f}", flush=True)
        step += 1
        if run.due():
            checkpoint()
    line = run.done(step)  # before the final checkpoint's own work
    checkpoint()
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, required=True, help="planned steps (the schedule's length)")
    t.add_argument("--bs", type=int, default=64)
    t.add_argument("--accum", type=int, default=1,
                   help="split each step's captions into this many equal parts, a backward pass each: the "
                   "same gradient with a part's memory (a step of 256 captions at once ran about 1.5 times slower "
                   "per caption than one of 128)")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--drop", type=float, default=0.1)
    t.add_argument("--wd", type=float, default=0.01, help="AdamW weight decay")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--threads-file", help="once this file exists, switch to the thread count it holds "
                   "(retrain.sh writes it when the other core is free)")
    t.add_argument("--ckpt-min", type=float, default=3.0, help="minutes between checkpoints")
    t.add_argument("--seed", type=int, default=SEED)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--encoder-layers", type=int, default=HP["encoder_layers"],
                   help="text encoder layers (export.py takes the count from the checkpoint)")
    t.add_argument("--keep", type=float, default=KEEP_FLAT,
                   help="share of the positions in rows without a shape that the loss samples")
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bfloat16 autocast for the matrix products (fp32 weights and softmax)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/bart_last.pt if there is one")
    args = ap.parse_args()
    if args.cmd == "train" and (args.accum < 1 or args.bs % args.accum):
        ap.error("--accum must divide --bs")
    {"prepare": cmd_prepare, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
