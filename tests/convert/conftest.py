"""Shared fixtures for the converter tests (tools/convert.py on the committed tiny checkpoints of
tests/golden/convert/, made by tools/reference/gen_convert_fixtures.py; the engine is
$BUILD/dalle-cli, BUILD defaults to "build")."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "golden" / "convert"
CLI = ROOT / os.environ.get("BUILD", "build") / "dalle-cli"
TINY = ROOT / "models" / "tiny"

sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def convert(*args):
    """Runs tools/convert.py; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def convert_ok(*args):
    r = convert(*args)
    assert r.returncode == 0, r.stderr + r.stdout
    return r


def cli(*args, check=True):
    if not CLI.exists():
        pytest.skip(f"{CLI} not built")
    r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="session")
def expected():
    with open(FIX / "expected.json", encoding="utf-8") as f:
        return json.load(f)


def bart_src(tmp, fmt):
    """A source directory as published: the fixture's weights + the tokenizer files."""
    d = tmp / f"src-{fmt}"
    d.mkdir()
    for p in (FIX / "bart" / fmt).iterdir():
        (d / p.name).symlink_to(p)
    for n in ("vocab.json", "merges.txt"):
        (d / n).symlink_to(TINY / n)
    return d
