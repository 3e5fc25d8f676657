"""convert.py — the published DALL·E mini / Mega, VQGAN and CLIP checkpoints → a dalle-server
model directory (config.json format "dalle-server-model" v1 + safetensors + tokenizer files).

    python3 tools/convert.py --out MODEL_DIR [--dtype f32|f16|bf16] [--name NAME] [--fresh]
        [--from min-dalle|flax --src DIR [--vocab F --merges F] [--mini|--mega]
         [--defaults min-dalle|dalle-mini] [--start-token T] [--heads N] [--image-vocab-size N]]
        [--vqgan PATH [--vqgan-dtype f32|f16|bf16] [--vqgan-eps E]]
        [--clip PATH [--clip-merges F]] [--wiki-words F]

BART (--from/--src):
  min-dalle  DIR holds encoder.pt + decoder.pt (Mega) or encoder_mini.pt + decoder_mini.pt (mini),
             torch.save zips of flat fp16 dicts (HF repo kuprel/min-dalle); tokenizer files default
             to DIR/vocab.json + merges.txt (Mega) or DIR/vocab_mini.json + merges_mini.txt (mini).
  flax       DIR holds flax_model.msgpack (dalle-mini DalleBart, scanned layers, [in, out] kernels,
             bias-only norms, arrays over 1 GiB chunked), config.json (checked against the shapes;
             gives the heads and decoder_start_token_id), vocab.json, merges.txt and, when present,
             enwiki-words-frequency.txt.
VQGAN (--vqgan): min-dalle's detoker.pt, or the vqgan-jax Flax checkpoint
  (dalle-mini/vqgan_imagenet_f16_16384: a directory holding flax_model.msgpack, or the file).
  The encoder half and quant_conv are dropped. GroupNorm ε: --vqgan-eps (default 1e-6, the trained
  value; min-dalle runs 1e-5).
CLIP (--clip): a Hugging Face CLIPModel directory (model.safetensors or pytorch_model.bin,
  config.json, merges.txt) or one of those files. Names are kept; position_ids buffers dropped.

Generation defaults (--defaults, default: the source's own): dalle-mini (its inference notebook)
start token 16384 (= image vocab size), cond_scale 10, top_k 50; min-dalle start token 16383
(= the last code), cond_scale 16, top_k 256.
With --from flax the start token is config.json's decoder_start_token_id.

config.json gets a "description" and "examples" (prompts that the server's page offers) for
a real DALL·E mini / Mega model unless it has them already: edit them there for other models.

Nothing is loaded whole: inputs are memory-mapped and each output tensor is read, checked,
converted and written before the next (peak memory ≈ the largest tensor in fp32 a few times,
not the model). Every tensor name and shape is checked against the hyper-parameters inferred from
the checkpoint (and config.json when given): an unknown key, a missing tensor or a wrong shape
stops the conversion with a message naming it; nothing is written to MODEL_DIR/config.json then.

If MODEL_DIR/config.json exists, the sections this run does not convert are kept (--fresh drops
them), so the parts can be converted one at a time; its "generation" section (a user setting) is
kept too unless --defaults is given.
"""
import argparse

DEFAULTS = {
    # start token: dalle-mini starts from image_vocab_size (16384, a row past the codes);
    # min-dalle from the last code, 2^14 - 1 = 16383 (docs/model-spec.md §3.5)
    "dalle-mini": dict(start_offset=0, cond_scale=10.0, top_k=50, top_p=1.0, temperature=1.0),
    "min-dalle": dict(start_offset=-1, cond_scale=16.0, top_k=256, top_p=1.0, temperature=1.0),
}


def build_parser():
    ap = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f16",
                    help="weights written for BART and CLIP (default f16: the published BART weights are fp16)")
    ap.add_argument("--name", help="model name in config.json (default: the output folder's name)")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing MODEL_DIR/config.json")
    ap.add_argument("--from", dest="src_format", choices=["min-dalle", "flax"], help="BART checkpoint format")
    ap.add_argument("--src", help="BART checkpoint directory")
    ap.add_argument("--vocab", help="BART BPE vocab.json (default: from --src)")
    ap.add_argument("--merges", help="BART BPE merges.txt (default: from --src)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--mini", action="store_const", dest="hparams", const="mini", help="require the published mini shapes")
    g.add_argument("--mega", action="store_const", dest="hparams", const="mega", help="require the published Mega shapes")
    g.add_argument("--hparams", choices=["auto", "mini", "mega"], help="auto (default): infer from the shapes")
    ap.set_defaults(hparams="auto")
    ap.add_argument("--heads", type=int, help="attention heads (default: config.json's, the preset's, else d_model/64)")
    ap.add_argument("--defaults", choices=sorted(DEFAULTS), help="generation defaults (default: the source's)")
    ap.add_argument("--start-token", type=int, help="decoder start token (overrides --defaults)")
    ap.add_argument("--image-vocab-size", type=int,
                    help="VQGAN codes that can be sampled (default min(16384, lm_head rows - 1))")
    ap.add_argument("--vqgan", help="detoker.pt, or a vqgan-jax flax_model.msgpack (or its directory)")
    ap.add_argument("--vqgan-dtype", choices=["f32", "f16", "bf16"], default="f32", help="VQGAN weights written (default f32)")
    ap.add_argument("--vqgan-eps", type=float, default=1e-6, help="VQGAN GroupNorm epsilon (default 1e-6)")
    ap.add_argument("--clip", help="Hugging Face CLIP directory or weights file")
    ap.add_argument("--clip-merges", help="CLIP BPE merges (default: merges.txt next to --clip)")
    ap.add_argument("--wiki-words", help="enwiki-words-frequency.txt (hashtag splitting)")
    return ap
