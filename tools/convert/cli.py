"""The conversion itself (numpy needed); the options and their documentation are in args.py."""
import json
import os
import shutil
import sys

from . import bart, clip, vqgan
from .args import DEFAULTS, build_parser
from .readers import ConvertError
from .writer import ALIGN, write_safetensors

FORMAT = "dalle-server-model"
FORMAT_VERSION = 1


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
    if os.path.isfile(path):
        return copy_in(path, out_dir)
    if os.path.realpath(os.path.dirname(os.path.abspath(path))) == os.path.realpath(out_dir):
        return os.path.basename(path), "named only (not present yet)"
    raise ConvertError(f"{path}: no such file")


# What a converted DALL·E mini / Mega model says about itself (config.json; /info, the page).
DEFAULT_DESCRIPTION = ("A DALL·E mini / Mega model: draws pictures of what an English caption "
                       "describes: objects, animals, places and scenes, in styles such as a "
                       "photo, an oil painting or a sketch. Short, concrete captions work best.")
DEFAULT_EXAMPLES = [
    "a red bicycle leaning against a brick wall",
    "an oil painting of a lighthouse at sunset",
    "a watercolor painting of a fox in the snow",
    "a photo of a cup of coffee on a wooden table",
    "a pencil sketch of a mountain village",
]


def main(argv=None):
    return run(build_parser().parse_args(argv))


def run(args):
    """Converts what the parsed arguments name; → the exit status (1: a ConvertError)."""
    try:
        convert(args)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1
    return 0


def _bart_sources(args):
    """→ (sources, hp, config.json dict, vocab path, merges path, extra files)."""
    src = args.src
    if not src or not os.path.isdir(src):
        raise ConvertError(f"--src {src}: not a directory")
    extra = {}
    if args.src_format == "min-dalle":
        sources = bart.load_min_dalle(src)
        mini = sources["encoder"][0].endswith("_mini.pt")
        sfx = "_mini" if mini else ""
        vocab = args.vocab or next((p for p in (os.path.join(src, f"vocab{sfx}.json"), os.path.join(src, "vocab.json"))
                                    if os.path.isfile(p)), None)
        merges = args.merges or next((p for p in (os.path.join(src, f"merges{sfx}.txt"), os.path.join(src, "merges.txt"))
                                      if os.path.isfile(p)), None)
        fcfg = {}
    else:
        path = os.path.join(src, "flax_model.msgpack")
        if not os.path.isfile(path):
            raise ConvertError(f"{src}: no flax_model.msgpack")
        sources = bart.load_flax(path)
        fcfg_path = os.path.join(src, "config.json")
        fcfg = bart.read_flax_config(fcfg_path)
        fcfg["_path"] = fcfg_path
        vocab = args.vocab or os.path.join(src, "vocab.json")
        merges = args.merges or os.path.join(src, "merges.txt")
        wiki = os.path.join(src, "enwiki-words-frequency.txt")
        if os.path.isfile(wiki):
            extra["wiki_words"] = wiki
    if not vocab or not os.path.isfile(vocab):
        raise ConvertError(f"{src}: no BART vocab.json (give --vocab)")
    if not merges or not os.path.isfile(merges):
        raise ConvertError(f"{src}: no BART merges.txt (give --merges)")
    hp = bart.infer_hparams(sources["encoder"], sources["decoder"])
    return sources, hp, fcfg, vocab, merges, extra


def convert(args):
    if not (args.src_format or args.vqgan or args.clip):
        raise ConvertError("nothing to convert: give --from/--src, --vqgan and/or --clip")
    if bool(args.src_format) != bool(args.src):
        raise ConvertError("--from and --src go together")
    out = args.out
    cfg_path = os.path.join(out, "config.json")
    old = {}
    if os.path.exists(cfg_path) and not args.fresh:
        try:
            with open(cfg_path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise ConvertError(f"{cfg_path}: exists but cannot be read ({e}); use --fresh to replace it")
    if not args.src_format and "bart" not in old:
        raise ConvertError(f"{cfg_path}: no BART part yet; convert it first or in the same run (--from/--src)")

    # ---- plan everything (all checks) before writing anything
    jobs = []  # (file key, file name, plan, dtype, metadata)
    config = dict(old) if old else {}
    files = dict(old.get("files", {}))
    notes = []
    copies = []
    if args.src_format:
        sources, hp, fcfg, vocab_path, merges_path, extra = _bart_sources(args)
        d = hp["d_model"]
        if args.heads is not None:
            heads = args.heads
        elif fcfg.get("encoder_attention_heads"):
            heads = int(fcfg["encoder_attention_heads"])
        elif args.hparams in bart.PRESETS:
            heads = bart.PRESETS[args.hparams]["attention_heads"]
        else:
            heads = max(1, d // 64)
        if heads <= 0 or d % heads:
            raise ConvertError(f"d_model {d} is not divisible by {heads} heads (use --heads)")
        hp["attention_heads"] = heads
        if fcfg:
            bart.check_flax_config(fcfg, fcfg["_path"], hp)
        if args.hparams in bart.PRESETS:
            diffs = [f"{k}: published {v}, found {hp[k]}" for k, v in bart.PRESETS[args.hparams].items() if hp[k] != v]
            if diffs:
                raise ConvertError(f"--{args.hparams}: the checkpoint does not have the published shapes:\n  "
                                   + "\n  ".join(diffs))
        plans = bart.plan_bart(sources, hp)
        defaults_name = args.defaults or ("min-dalle" if args.src_format == "min-dalle" else "dalle-mini")
        gen = dict(DEFAULTS[defaults_name])
        image_vocab = args.image_vocab_size or min(16384, hp["lm_head_size"] - 1)
        start = image_vocab + gen.pop("start_offset")
        if args.src_format == "flax" and "decoder_start_token_id" in fcfg and not args.defaults:
            start = int(fcfg["decoder_start_token_id"])
        if args.start_token is not None:
            start = args.start_token
        if not 0 < image_vocab < hp["lm_head_size"]:
            raise ConvertError(f"--image-vocab-size {image_vocab} must be below lm_head_size {hp['lm_head_size']}")
        if not 0 <= start < hp["lm_head_size"]:
            raise ConvertError(f"start token {start} must be a decoder embedding row (0..{hp['lm_head_size'] - 1})")
        gen["top_k"] = min(gen["top_k"], image_vocab)
        vocab, specials = read_vocab(vocab_path)
        for key, i in specials.items():
            if not 0 <= i < hp["text_vocab_size"]:
                raise ConvertError(f"{vocab_path}: {key} = {i} has no encoder embedding row "
                                   f"(text_vocab_size {hp['text_vocab_size']})")
        beyond = sorted(t for t, i in vocab.items() if i >= hp["text_vocab_size"])
        if beyond:
            notes.append(f"note: {len(beyond)} vocab id(s) ≥ text_vocab_size {hp['text_vocab_size']} have no "
                         f"embedding row: {beyond[:5]}{' ...' if len(beyond) > 5 else ''} (as <mask> in the "
                         f"published mini model; the tokenizer never emits them)")
        src_label = {"min-dalle": "min-dalle", "flax": "dalle-mini flax"}[args.src_format]
        for which in ("encoder", "decoder"):
            files[which] = f"{which}.safetensors"
            jobs.append((which, files[which], plans[which], args.dtype,
                         {"format": "pt" if args.src_format == "min-dalle" else "flax",
                          "converted_from": src_label, "source": os.path.basename(sources[which][0].split(" (")[0])}))
        copies += [("vocab", vocab_path, "vocab.json"), ("merges", merges_path, "merges.txt")]
        if extra.get("wiki_words") and not args.wiki_words:
            copies.append(("wiki_words", extra["wiki_words"], None))
        config["bart"] = {
            "d_model": d, "encoder_layers": hp["encoder_layers"], "decoder_layers": hp["decoder_layers"],
            "attention_heads": heads, "glu_dim": hp["glu_dim"], "text_vocab_size": hp["text_vocab_size"],
            "text_length": hp["text_length"], "image_vocab_size": image_vocab,
            "image_length": hp["image_length"], "lm_head_size": hp["lm_head_size"], "start_token": start,
            "layer_norm_eps": 1e-5,
        }
        config["text"] = {"normalize": True, **specials}
        if "generation" in old and not args.defaults:
            notes.append('"generation" section: kept from the existing config.json (--defaults or --fresh replaces it)')
        else:
            config["generation"] = gen
            notes.append(f"generation defaults: {defaults_name} (cond_scale {gen['cond_scale']}, top_k {gen['top_k']})")
        notes.append(f"start token: {start}")

    bart_cfg = config["bart"]
    if args.vqgan:
        vpath = args.vqgan
        if os.path.isdir(vpath):
            cand = [os.path.join(vpath, n) for n in ("flax_model.msgpack", "detoker.pt") if os.path.isfile(os.path.join(vpath, n))]
            if len(cand) != 1:
                raise ConvertError(f"{vpath}: expected one of flax_model.msgpack or detoker.pt")
            vpath = cand[0]
        if vpath.endswith(".msgpack"):
            vlabel, vsd, dropped = vqgan.load_flax(vpath)
            notes.append(f"{vpath}: {dropped} encoder/quant_conv tensors dropped (not needed to decode)")
            vsrc = "vqgan-jax flax"
        else:
            vlabel, vsd = vqgan.load_detoker(vpath)
            vsrc = "min-dalle detoker"
        latent = int(round(bart_cfg["image_length"] ** 0.5))
        if latent * latent != bart_cfg["image_length"]:
            raise ConvertError(f"bart.image_length {bart_cfg['image_length']} is not a square grid")
        vhp = vqgan.infer_hparams(vsd, vlabel, latent, args.vqgan_eps)
        vplan = vqgan.plan_vqgan(vlabel, vsd, vhp)
        if vhp["codebook_size"] < bart_cfg["image_vocab_size"]:
            raise ConvertError(f"{vlabel}: {vhp['codebook_size']} codes, but BART samples "
                               f"{bart_cfg['image_vocab_size']} (bart.image_vocab_size)")
        files["vqgan"] = "vqgan.safetensors"
        jobs.append(("vqgan", files["vqgan"], vplan, args.vqgan_dtype,
                     {"format": "flax" if vpath.endswith(".msgpack") else "pt", "converted_from": vsrc,
                      "source": os.path.basename(vpath)}))
        config["vqgan"] = dict(vhp)

    if args.clip:
        cpath, ccfg = clip.find_files(args.clip)
        csd = clip.load(cpath)
        sec = clip.infer_section(csd, cpath, ccfg)
        cplan = clip.plan_clip(cpath, csd, sec)
        files["clip"] = "clip.safetensors"
        jobs.append(("clip", files["clip"], cplan, args.dtype, {"format": "pt", "converted_from": "huggingface CLIPModel",
                                                                  "source": os.path.basename(cpath)}))
        config["clip"] = sec
        merges = args.clip_merges or os.path.join(os.path.dirname(os.path.abspath(cpath)), "merges.txt")
        if not os.path.isfile(merges) and not args.clip_merges and files.get("clip_merges"):
            notes.append(f"CLIP merges: kept {files['clip_merges']}")
        else:
            copies.append(("clip_merges", merges, "clip_merges.txt"))
    elif args.clip_merges:
        copies.append(("clip_merges", args.clip_merges, "clip_merges.txt"))
    if args.wiki_words:
        copies.append(("wiki_words", args.wiki_words, None))

    # ---- write
    os.makedirs(out, exist_ok=True)
    for key, src, name in copies:
        if key == "wiki_words" and args.wiki_words:
            files[key], how = optional_file(src, out)
        else:
            files[key], how = copy_in(src, out, name)
        notes.append(f"{files[key]}: {how}")
    report = []
    for key, name, plan, dtype, meta in jobs:
        size, aligned, n = write_safetensors(os.path.join(out, name), plan, dtype, meta)
        report.append(f"{os.path.join(out, name)}: {size} bytes, {n} tensors {dtype.upper()}, "
                      f"{aligned} of them {ALIGN}-byte aligned")
    config["format"] = FORMAT
    config["format_version"] = FORMAT_VERSION
    config["name"] = args.name or old.get("name") or os.path.basename(os.path.abspath(out))
    config.setdefault("description", DEFAULT_DESCRIPTION)
    config.setdefault("examples", DEFAULT_EXAMPLES)
    config["files"] = files
    ordered = {k: config[k] for k in ("format", "format_version", "name", "description", "examples",
                                      "bart", "text", "generation", "files", "vqgan", "clip")
               if k in config}
    tmp = cfg_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ordered, f, indent=2)
        f.write("\n")
    os.replace(tmp, cfg_path)
    for line in report + notes:
        print(line)
    print(f"wrote {cfg_path}")
