"""tools/convert.py on tiny checkpoints in every published format (tests/golden/convert/, saved by
the peers' own code: min-dalle state dicts via torch.save, dalle-mini / vqgan-jax trees via
flax.serialization, CLIP via transformers), then the engine (dalle-cli) on the converted model
against the peers' outputs (expected.json), and one refusal per kind of bad input."""
import hashlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIX, ROOT, TINY, bart_src, cli, convert, convert_ok

from convert.readers import read_flax_msgpack, read_safetensors, read_torch, flatten
from writers import save_flax, save_torch

TOL_CLIP = 1e-4  # max |ours − ref| / max |ref| (P2 CLIP bar)


def tensors(path):
    return {k: v.f32() for k, v in read_safetensors(str(path)).items()}


def same_tensors(a, b):
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb), sorted(set(ta) ^ set(tb))[:5]
    for k in ta:
        assert ta[k].shape == tb[k].shape and np.array_equal(ta[k], tb[k]), k


# ---------------------------------------------------------------------------------------------
# fixtures

def test_fixture_files_unchanged(expected):
    for rel, digest in expected["sha256"].items():
        with open(FIX / rel, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, rel


def test_flax_fixture_has_chunked_arrays():
    """The committed flax files exercise the chunked-array layout, with chunk borders inside layers."""
    raw = (FIX / "bart" / "flax" / "flax_model.msgpack").read_bytes()
    assert b"__msgpack_chunked_array__" in raw
    tree = read_flax_msgpack(str(FIX / "bart" / "flax" / "flax_model.msgpack"))
    k = flatten(tree)["model/decoder/layers/FlaxBartDecoderLayers/FlaxBartAttention_0/q_proj/kernel"]
    assert k.shape == (2, 32, 32)


def test_torch_reader_matches_torch_layout():
    sd = read_torch(str(FIX / "bart" / "min-dalle" / "encoder.pt"))
    assert sd["embed_tokens.weight"].shape == (3999, 32) and sd["embed_tokens.weight"].kind == "f16"
    assert "final_ln.weight" not in sd and "final_ln.bias" in sd


# ---------------------------------------------------------------------------------------------
# BART

@pytest.fixture(scope="module")
def bart_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bart")
    out = {}
    for fmt in ("min-dalle", "flax"):
        src = bart_src(tmp, fmt)
        for dtype in ("f16", "f32", "bf16"):
            d = tmp / f"{fmt}-{dtype}"
            heads = ["--heads", 2] if fmt == "min-dalle" else []  # min-dalle files do not say; flax's config.json does
            convert_ok("--from", fmt, "--src", src, "--dtype", dtype, *heads, "--out", d)
            out[fmt, dtype] = d
    return out


def config(d):
    with open(d / "config.json", encoding="utf-8") as f:
        return json.load(f)


def test_bart_config_from_each_source(bart_models, expected):
    hp = expected["bart"]["hparams"]
    for fmt, start, cond, top_k in (("min-dalle", 511, 16.0, 256), ("flax", 512, 10.0, 50)):
        c = config(bart_models[fmt, "f16"])
        b = c["bart"]
        for k in ("d_model", "encoder_layers", "decoder_layers", "attention_heads", "glu_dim",
                  "text_vocab_size", "text_length", "image_length", "lm_head_size"):
            assert b[k] == hp[k], (fmt, k)
        assert b["image_vocab_size"] == 512 and b["start_token"] == start, fmt
        assert c["generation"]["cond_scale"] == cond and c["generation"]["top_k"] == top_k


def test_description_and_examples(bart_models, tmp_path):
    """A converted model describes itself (defaults for a real DALL·E model); a description and
    examples already in config.json are kept by a later run."""
    from convert.cli import DEFAULT_DESCRIPTION, DEFAULT_EXAMPLES
    c = config(bart_models["flax", "f16"])
    assert c["description"] == DEFAULT_DESCRIPTION and c["examples"] == DEFAULT_EXAMPLES
    assert list(c)[:5] == ["format", "format_version", "name", "description", "examples"]
    d = tmp_path / "kept"
    shutil.copytree(bart_models["min-dalle", "f32"], d)
    c["description"], c["examples"] = "my own words", ["a tiny prompt"]
    (d / "config.json").write_text(json.dumps(c))
    convert_ok("--vqgan", FIX / "vqgan" / "detoker.pt", "--out", d)
    c2 = config(d)
    assert c2["description"] == "my own words" and c2["examples"] == ["a tiny prompt"]
    assert "vqgan" in c2


def test_bart_formats_give_identical_tensors(bart_models):
    for dtype in ("f16", "f32", "bf16"):
        for f in ("encoder", "decoder"):
            same_tensors(bart_models["min-dalle", dtype] / f"{f}.safetensors",
                         bart_models["flax", dtype] / f"{f}.safetensors")


def test_bart_dtypes(bart_models):
    """f16 → f32 exact (the published weights are fp16); bf16 within half an ulp (2^-8 relative)."""
    for f in ("encoder", "decoder"):
        a = tensors(bart_models["min-dalle", "f16"] / f"{f}.safetensors")
        b = tensors(bart_models["min-dalle", "f32"] / f"{f}.safetensors")
        c = tensors(bart_models["min-dalle", "bf16"] / f"{f}.safetensors")
        for k in a:
            assert np.array_equal(a[k], b[k]), k
            assert np.all(np.abs(c[k] - a[k]) <= np.abs(a[k]) * 2.0**-8), k


def engine_tokens(model, prompt, cond, start=None):
    m = model
    if start is not None and config(model)["bart"]["start_token"] != start:
        m = model.parent / f"{model.name}-start{start}"
        if not m.exists():
            shutil.copytree(model, m, symlinks=True)
            c = config(model)
            c["bart"]["start_token"] = start
            (m / "config.json").write_text(json.dumps(c))
    r = cli("tokens", "--model", m, "--prompt", prompt, "-n", 1, "--seed", 1, "--top-k", 1,
            "--cond-scale", cond, "--threads", 2)
    return json.loads(r.stdout)["tokens"][0]


@pytest.mark.parametrize("fmt", ["min-dalle", "flax"])
def test_bart_engine_equals_min_dalle(bart_models, expected, fmt):
    """Guided greedy codes of the converted model = min-dalle's on the same weights (fp32)."""
    model = bart_models[fmt, "f16"]
    mism = 0
    for run in expected["bart"]["runs"]:
        got = engine_tokens(model, run["prompt"], run["cond_scale"], run["start_token"])
        mism += sum(a != b for a, b in zip(got, run["tokens"]))
    assert mism == 0, f"{mism} of {256 * len(expected['bart']['runs'])} codes differ"


def test_bart_bf16_runs(bart_models):
    toks = engine_tokens(bart_models["flax", "bf16"], "a red bicycle", 10.0)
    assert len(toks) == 256 and all(0 <= t < 512 for t in toks)


# ---------------------------------------------------------------------------------------------
# VQGAN

@pytest.fixture(scope="module")
def vqgan_models(tmp_path_factory, bart_models):
    tmp = tmp_path_factory.mktemp("vqgan")
    out = {}
    for fmt, path in (("min-dalle", FIX / "vqgan" / "detoker.pt"), ("flax", FIX / "vqgan" / "flax")):
        d = tmp / fmt
        shutil.copytree(bart_models["min-dalle", "f32"], d)
        convert_ok("--vqgan", path, "--out", d)
        out[fmt] = d
    return out


def test_vqgan_config_and_formats(vqgan_models, expected):
    want = expected["vqgan"]["config"]
    for fmt in ("min-dalle", "flax"):
        c = config(vqgan_models[fmt])
        assert c["vqgan"] == want, fmt
        assert c["bart"]["d_model"] == 32  # the BART part is kept
    same_tensors(vqgan_models["min-dalle"] / "vqgan.safetensors", vqgan_models["flax"] / "vqgan.safetensors")


@pytest.mark.parametrize("fmt", ["min-dalle", "flax"])
def test_vqgan_engine_equals_taming(vqgan_models, expected, fmt, tmp_path):
    """Engine decode of the peer's code grids, as JPEG quality 100 4:4:4, vs taming's uint8 output."""
    Image = pytest.importorskip("PIL.Image")
    tok = tmp_path / "tokens.json"
    tok.write_text(json.dumps({"tokens": expected["vqgan"]["codes"]}))
    cli("decode", "--model", vqgan_models[fmt], "--tokens", tok, "--quality", 100, "--subsampling", "444",
        "--out", tmp_path / "out")
    ref = np.array(expected["vqgan"]["image_u8"], dtype=np.uint8)
    for i in range(len(ref)):
        got = np.asarray(Image.open(tmp_path / "out" / f"{i}.jpg").convert("RGB"), dtype=np.int32)
        assert got.shape == ref[i].shape
        # the peer's pixels through the same JPEG step (Pillow's libjpeg, quality 100, 4:4:4):
        # P2 bar on uint8, ≥ 99.9 % identical and none off by more than 1 (measured: identical)
        buf = io.BytesIO()
        Image.fromarray(ref[i]).save(buf, format="JPEG", quality=100, subsampling=0)
        peer = np.asarray(Image.open(buf).convert("RGB"), dtype=np.int32)
        diff = np.abs(got - peer)
        assert (diff == 0).mean() >= 0.999 and diff.max() <= 1, (i, float((diff == 0).mean()), int(diff.max()))
        # and against the raw peer pixels: JPEG q100 alone moves them by ≤ 3 levels
        raw = np.abs(got - ref[i].astype(np.int32))
        assert raw.mean() < 0.75 and raw.max() <= 4, (i, float(raw.mean()), int(raw.max()))


# ---------------------------------------------------------------------------------------------
# CLIP

@pytest.fixture(scope="module")
def clip_models(tmp_path_factory, vqgan_models):
    # BART + VQGAN + CLIP, as a real model directory (the engine sets up CLIP ranking only for a
    # model with a VQGAN: dalle-cli rank on a CLIP-only directory crashes)
    tmp = tmp_path_factory.mktemp("clip")
    out = {}
    for fmt in ("safetensors", "bin"):
        d = tmp / fmt
        shutil.copytree(vqgan_models["flax"], d)
        convert_ok("--clip", FIX / "clip" / fmt, "--clip-merges", TINY / "clip_merges.txt", "--dtype", "f32",
                   "--out", d)
        out[fmt] = d
    return out


def test_clip_config_and_formats(clip_models, expected):
    for fmt in ("safetensors", "bin"):
        assert config(clip_models[fmt])["clip"] == expected["clip"]["config"], fmt
    same_tensors(clip_models["safetensors"] / "clip.safetensors", clip_models["bin"] / "clip.safetensors")
    assert "text_model.embeddings.position_ids" in read_torch(str(FIX / "clip" / "bin" / "pytorch_model.bin"))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_clip_engine_equals_transformers(clip_models, expected, fmt):
    e = expected["clip"]
    ref = np.array(e["logits_per_image"])  # [images, prompts]
    imgs = [FIX / "clip" / n for n in e["images"]]
    worst = 0.0
    for j, prompt in enumerate(e["prompts"]):
        r = cli("rank", "--model", clip_models[fmt], "--prompt", prompt, *imgs, "--threads", 2)
        got = np.array(json.loads(r.stdout)["scores"])
        err = float(np.abs(got - ref[:, j]).max() / np.abs(ref).max())
        worst = max(worst, err)
        assert list(np.argsort(-got, kind="stable")) == list(np.argsort(-ref[:, j], kind="stable"))
    assert worst <= TOL_CLIP, worst


# ---------------------------------------------------------------------------------------------
# refusals: one per kind of bad input and format; nothing is written

def refuse(out, *args):
    r = convert(*args, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert not (out / "config.json").exists()
    return r.stderr


def torch_dict(path):
    return {k: v.f32() if k != "embed_tokens.weight" else v.f32() for k, v in read_torch(str(path)).items()}


def pt_case(tmp, edit):
    src = tmp / "src"
    src.mkdir()
    enc = torch_dict(FIX / "bart" / "min-dalle" / "encoder.pt")
    dec = torch_dict(FIX / "bart" / "min-dalle" / "decoder.pt")
    edit(enc, dec)
    save_torch(src / "encoder.pt", enc)
    save_torch(src / "decoder.pt", dec)
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    return refuse(tmp / "out", "--from", "min-dalle", "--src", src)


def test_pt_writer_round_trip(tmp_path):
    """The test's own .pt writer produces what the reader reads (so the refusals below test the checks)."""
    src = tmp_path / "src"
    src.mkdir()
    enc = torch_dict(FIX / "bart" / "min-dalle" / "encoder.pt")
    dec = torch_dict(FIX / "bart" / "min-dalle" / "decoder.pt")
    save_torch(src / "encoder.pt", enc)
    save_torch(src / "decoder.pt", dec)
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    convert_ok("--from", "min-dalle", "--src", src, "--out", tmp_path / "out")


def test_refuse_pt_unknown_key(tmp_path):
    err = pt_case(tmp_path, lambda e, d: e.update({"layers.0.self_attn.q_proj.bias": np.zeros(32, np.float32)}))
    assert "layers.0.self_attn.q_proj.bias: unknown key" in err


def test_refuse_pt_wrong_shape(tmp_path):
    err = pt_case(tmp_path, lambda e, d: d.update({"layers.1.glu.fc2.weight": np.zeros((32, 47), np.float32)}))
    assert "layers.1.glu.fc2.weight: wrong shape: expected [32, 48], found [32, 47]" in err


def test_refuse_pt_missing_tensor(tmp_path):
    err = pt_case(tmp_path, lambda e, d: d.pop("layers.1.encoder_attn.k_proj.weight"))
    assert "layers.1.encoder_attn.k_proj.weight: missing tensor" in err


def test_refuse_pt_scale_on_bias_only_norm(tmp_path):
    err = pt_case(tmp_path, lambda e, d: e.update({"layers.0.glu.ln0.weight": np.full(32, 1.5, np.float32)}))
    assert "layers.0.glu.ln0.weight: a bias-only LayerNorm with a scale that is not 1" in err


def test_refuse_pt_foreign_pickle(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    import zipfile
    with zipfile.ZipFile(src / "encoder.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x85R.")
    shutil.copy(FIX / "bart" / "min-dalle" / "decoder.pt", src / "decoder.pt")
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    err = refuse(tmp_path / "out", "--from", "min-dalle", "--src", src)
    assert "refusing to unpickle os.system" in err


def flax_tree(path):
    def conv(t):
        return {k: conv(v) for k, v in t.items()} if isinstance(t, dict) else t.f32()
    return conv(read_flax_msgpack(str(path)))


def flax_case(tmp, edit, cfg_edit=None):
    src = tmp / "src"
    src.mkdir()
    tree = flax_tree(FIX / "bart" / "flax" / "flax_model.msgpack")
    edit(tree)
    save_flax(src / "flax_model.msgpack", tree)
    cfg = json.loads((FIX / "bart" / "flax" / "config.json").read_text())
    if cfg_edit:
        cfg_edit(cfg)
    (src / "config.json").write_text(json.dumps(cfg))
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    return refuse(tmp / "out", "--from", "flax", "--src", src)


ENC = "model/encoder/layers/FlaxBartEncoderLayers"


def test_flax_writer_round_trip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_flax(src / "flax_model.msgpack", flax_tree(FIX / "bart" / "flax" / "flax_model.msgpack"))
    for n in ("config.json",):
        (src / n).symlink_to(FIX / "bart" / "flax" / n)
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    convert_ok("--from", "flax", "--src", src, "--out", tmp_path / "out")


def test_refuse_flax_unknown_key(tmp_path):
    def edit(t):
        t["model"]["encoder"]["layers"]["FlaxBartEncoderLayers"]["FlaxBartAttention_0"]["q_proj"]["bias"] = \
            np.zeros((2, 32), np.float32)
    err = flax_case(tmp_path, edit)
    assert f"{ENC}/FlaxBartAttention_0/q_proj/bias: unknown key" in err


def test_refuse_flax_unscanned_layout(tmp_path):
    def edit(t):
        t["model"]["encoder"]["layers"]["0"] = {"LayerNorm_0": {"bias": np.zeros(32, np.float32)}}
    err = flax_case(tmp_path, edit)
    assert "model/encoder/layers/0/LayerNorm_0/bias: unknown key (unscanned layers" in err


def test_refuse_flax_wrong_shape(tmp_path):
    def edit(t):
        t["model"]["decoder"]["layers"]["FlaxBartDecoderLayers"]["GLU_0"]["Dense_2"]["kernel"] = \
            np.zeros((2, 47, 32), np.float32)
    err = flax_case(tmp_path, edit)
    assert "layers.1.glu.fc2.weight: wrong shape: expected [32, 48], found [32, 47]" in err
    assert "FlaxBartDecoderLayers/GLU_0/Dense_2/kernel[1]" in err


def test_refuse_flax_lm_head_rows(tmp_path):
    def edit(t):
        t["lm_head"]["kernel"] = np.zeros((32, 600), np.float32)
    err = flax_case(tmp_path, edit)
    assert "embed_tokens.weight has 513 rows but lm_head.weight has 600" in err


def test_refuse_flax_missing_tensor(tmp_path):
    def edit(t):
        del t["model"]["decoder"]["layers"]["FlaxBartDecoderLayers"]["LayerNorm_3"]["scale"]
    err = flax_case(tmp_path, edit)
    assert "layers.0.encoder_attn_layer_norm.weight: missing tensor" in err


def test_refuse_flax_config_mismatch(tmp_path):
    err = flax_case(tmp_path, lambda t: None, lambda c: c.update(encoder_ffn_dim=64))
    assert "encoder_ffn_dim = 64 but the weights say 48" in err


def test_refuse_flax_truncated(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (FIX / "bart" / "flax" / "flax_model.msgpack").read_bytes()
    (src / "flax_model.msgpack").write_bytes(data[: len(data) // 2])
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    err = refuse(tmp_path / "out", "--from", "flax", "--src", src)
    assert "truncated" in err


def vqgan_case(tmp, bart_models, edit):
    tree = flax_tree(FIX / "vqgan" / "flax" / "flax_model.msgpack")
    edit(tree)
    save_flax(tmp / "flax_model.msgpack", tree)
    out = tmp / "out"
    shutil.copytree(bart_models["min-dalle", "f16"], out)
    before = (out / "config.json").read_bytes()
    r = convert("--vqgan", tmp / "flax_model.msgpack", "--out", out)
    assert r.returncode == 1 and (out / "config.json").read_bytes() == before
    assert not (out / "vqgan.safetensors").exists()
    return r.stderr


def test_refuse_vqgan_unknown_key(tmp_path, bart_models):
    err = vqgan_case(tmp_path, bart_models,
                     lambda t: t["decoder"]["up_1"].update({"temb_proj": {"kernel": np.zeros((4, 4), np.float32)}}))
    assert "decoder/up_1/temb_proj/kernel" in err


def test_refuse_vqgan_wrong_shape(tmp_path, bart_models):
    def edit(t):
        t["decoder"]["up_1"]["block_1"]["conv1"]["kernel"] = np.zeros((3, 3, 64, 32), np.float32)
    err = vqgan_case(tmp_path, bart_models, edit)
    assert "decoder.up.1.block.1.conv1.weight: wrong shape: expected [64, 64, 3, 3], found [32, 64, 3, 3]" in err


def test_refuse_vqgan_missing_tensor(tmp_path, bart_models):
    err = vqgan_case(tmp_path, bart_models, lambda t: t["decoder"]["mid"]["attn_1"].pop("proj_out"))
    assert "decoder.mid.attn_1.proj_out.weight: missing tensor" in err


def clip_case(tmp, bart_models, edit):
    from convert.writer import write_safetensors
    src = {k: v.f32() for k, v in read_safetensors(str(FIX / "clip" / "safetensors" / "model.safetensors")).items()}
    edit(src)
    d = tmp / "hf"
    d.mkdir()
    write_safetensors(str(d / "model.safetensors"), [(k, v.shape, (lambda v=v: v)) for k, v in src.items()], "f32")
    (d / "config.json").symlink_to(FIX / "clip" / "safetensors" / "config.json")
    out = tmp / "out"
    shutil.copytree(bart_models["min-dalle", "f16"], out)
    before = (out / "config.json").read_bytes()
    r = convert("--clip", d, "--clip-merges", TINY / "clip_merges.txt", "--out", out)
    assert r.returncode == 1 and (out / "config.json").read_bytes() == before
    return r.stderr


def test_refuse_clip_unknown_key(tmp_path, bart_models):
    err = clip_case(tmp_path, bart_models, lambda s: s.update({"text_model.extra.weight": np.zeros(3, np.float32)}))
    assert "text_model.extra.weight: unknown key" in err


def test_refuse_clip_wrong_shape(tmp_path, bart_models):
    err = clip_case(tmp_path, bart_models,
                    lambda s: s.update({"vision_model.encoder.layers.1.mlp.fc2.weight": np.zeros((32, 63), np.float32)}))
    assert "vision_model.encoder.layers.1.mlp.fc2.weight: wrong shape: expected [32, 64], found [32, 63]" in err


def test_refuse_clip_missing_tensor(tmp_path, bart_models):
    err = clip_case(tmp_path, bart_models, lambda s: s.pop("text_model.final_layer_norm.bias"))
    assert "text_model.final_layer_norm.bias: missing tensor" in err


def test_refuse_clip_config_mismatch(tmp_path, bart_models):
    from convert.writer import write_safetensors
    d = tmp_path / "hf"
    d.mkdir()
    (d / "model.safetensors").symlink_to(FIX / "clip" / "safetensors" / "model.safetensors")
    cfg = json.loads((FIX / "clip" / "safetensors" / "config.json").read_text())
    cfg["text_config"]["hidden_act"] = "gelu"
    (d / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    shutil.copytree(bart_models["min-dalle", "f16"], out)
    r = convert("--clip", d, "--out", out)
    assert r.returncode == 1 and "only quick_gelu" in r.stderr
    del write_safetensors


# ---------------------------------------------------------------------------------------------
# file names, presets, re-conversion

def test_min_dalle_mini_file_names(tmp_path):
    """kuprel/min-dalle's mini files: encoder_mini.pt, decoder_mini.pt, vocab_mini.json, merges_mini.txt."""
    src = tmp_path / "src"
    src.mkdir()
    for n in ("encoder", "decoder"):
        (src / f"{n}_mini.pt").symlink_to(FIX / "bart" / "min-dalle" / f"{n}.pt")
    (src / "vocab_mini.json").symlink_to(TINY / "vocab.json")
    (src / "merges_mini.txt").symlink_to(TINY / "merges.txt")
    r = convert_ok("--from", "min-dalle", "--src", src, "--heads", 2, "--out", tmp_path / "out")
    assert "vocab.json: copied" in r.stdout and (tmp_path / "out" / "merges.txt").exists()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["bart"]["attention_heads"] == 2


def test_refuse_preset_mismatch(tmp_path):
    err = refuse(tmp_path / "out", "--from", "flax", "--src", bart_src(tmp_path, "flax"), "--mega")
    assert "--mega: the checkpoint does not have the published shapes" in err and "d_model: published 2048, found 32" in err


def test_refuse_legacy_torch_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "encoder.pt").write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    (src / "decoder.pt").symlink_to(FIX / "bart" / "min-dalle" / "decoder.pt")
    for n in ("vocab.json", "merges.txt"):
        (src / n).symlink_to(TINY / n)
    err = refuse(tmp_path / "out", "--from", "min-dalle", "--src", src)
    assert "legacy (pre-1.6, non-zip) torch.save format" in err


def test_reconversion_keeps_generation_settings(tmp_path):
    """Re-converting the weights into an existing folder keeps its generation section unless --defaults."""
    out = tmp_path / "out"
    src = bart_src(tmp_path, "flax")
    convert_ok("--from", "flax", "--src", src, "--out", out)
    c = json.loads((out / "config.json").read_text())
    c["generation"]["top_k"] = 7
    (out / "config.json").write_text(json.dumps(c))
    convert_ok("--from", "flax", "--src", src, "--out", out)
    assert json.loads((out / "config.json").read_text())["generation"]["top_k"] == 7
    convert_ok("--from", "flax", "--src", src, "--defaults", "min-dalle", "--out", out)
    c = json.loads((out / "config.json").read_text())
    assert c["generation"]["top_k"] == 256 and c["generation"]["cond_scale"] == 16.0
    assert c["bart"]["start_token"] == 511  # the min-dalle start: the last code


# ---------------------------------------------------------------------------------------------
# without numpy: Python started with -S does not see site-packages, where numpy lives

def convert_without_numpy(*args):
    probe = subprocess.run([sys.executable, "-S", "-c", "import numpy"], capture_output=True)
    assert probe.returncode != 0, "numpy importable without site-packages: the test proves nothing"
    return subprocess.run([sys.executable, "-S", str(ROOT / "tools" / "convert.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_help_and_usage_errors_need_no_numpy():
    r = convert_without_numpy("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: convert.py") and "--vqgan" in r.stdout, r.stderr
    r = convert_without_numpy("--dtype", "f8")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_conversion_without_numpy_says_what_to_install():
    r = convert_without_numpy("--out", "unused", "--vqgan", "unused.pt")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "convert.py: needs numpy (apt install python3-numpy, or pip install numpy)\n"
