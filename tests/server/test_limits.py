"""The one table of generation-parameter ranges and size limits (include/dalle.h, "limits")
against what users read and what the server does: openapi.yaml's GenerateRequest schema, the
CLI's --help, the server's --max-prompt range, and the server's answers at each bound and just
past it (the validator reads the same names)."""
import pathlib
import re
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT

HEADER = ROOT / "include" / "dalle.h"
SERVER_HEADER = ROOT / "server" / "server.h"
CLI = BIN.parent / "dalle-cli"


def limits():
    """DALLE_<NAME> → value of the limits block of dalle.h (INT64_MAX spelled out)."""
    text = HEADER.read_text()
    block = text[text.index("/* ---- limits"):text.index("/* ---- text")]
    out = {}
    for name, value in re.findall(r"^#define DALLE_(\w+)\s+(\w+)", block, re.M):
        out[name] = 2**63 - 1 if value == "INT64_MAX" else int(value)
    return out


LIM = limits()


def test_the_table_has_every_limit():
    assert set(LIM) == {"MAX_PROMPT_BYTES", "MAX_STATE_IMAGES", "COND_SCALE_MIN", "COND_SCALE_MAX",
                        "TEMPERATURE_MAX", "TOP_P_MAX", "TOP_K_MIN", "SEED_MAX", "QUALITY_MIN",
                        "QUALITY_MAX"}


def generate_schema():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return spec["components"]["schemas"]["GenerateRequest"]["properties"]


def test_openapi_states_the_same_ranges():
    p = generate_schema()
    assert (p["cond_scale"]["minimum"], p["cond_scale"]["maximum"]) == (
        LIM["COND_SCALE_MIN"], LIM["COND_SCALE_MAX"])
    assert p["temperature"]["maximum"] == LIM["TEMPERATURE_MAX"]
    assert 0 < p["temperature"]["exclusiveMinimum"] < 1e-40  # (0, max] as a float
    assert p["top_p"]["maximum"] == LIM["TOP_P_MAX"]
    assert 0 < p["top_p"]["exclusiveMinimum"] < 1e-40
    assert p["top_k"]["minimum"] == LIM["TOP_K_MIN"]
    assert (p["seed"]["minimum"], p["seed"]["maximum"]) == (0, LIM["SEED_MAX"])
    assert (p["quality"]["minimum"], p["quality"]["maximum"]) == (
        LIM["QUALITY_MIN"], LIM["QUALITY_MAX"])


def test_server_limits_match_openapi():
    """the server's own request limits (server/server.h): the OpenAI route's n and the
    preview interval, as openapi.yaml states them"""
    text = SERVER_HEADER.read_text()
    own = {k: int(v) for k, v in re.findall(r"^#define DALLE_(\w+)\s+(\d+)", text, re.M)}
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]
    assert spec["OpenAIRequest"]["properties"]["n"]["maximum"] == own["OPENAI_MAX_N"]
    assert generate_schema()["preview_every"]["minimum"] == own["PREVIEW_MIN_EVERY"]


def test_cli_help_states_the_same_ranges():
    out = subprocess.run([str(CLI), "--help"], capture_output=True, text=True, check=True).stdout
    assert f"at most {LIM['MAX_PROMPT_BYTES']} bytes" in out
    assert f"[{LIM['COND_SCALE_MIN']}, {LIM['COND_SCALE_MAX']}]" in out
    assert f"--temperature T     (0, {LIM['TEMPERATURE_MAX']}]" in out
    assert f"(0, {LIM['TOP_P_MAX']}]" in out
    assert f"{LIM['TOP_K_MIN']}..image codes" in out
    assert f"JPEG quality {LIM['QUALITY_MIN']}..{LIM['QUALITY_MAX']}" in out


def test_max_prompt_setting_stops_at_the_engine_limit():
    top = LIM["MAX_PROMPT_BYTES"]
    r = subprocess.run([str(BIN), "--max-prompt", str(top + 1), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "max-prompt" in r.stderr, r.stderr


@pytest.mark.parametrize("field,ok,bad", [
    ("cond_scale", LIM["COND_SCALE_MAX"], LIM["COND_SCALE_MAX"] + 0.5),
    ("cond_scale", LIM["COND_SCALE_MIN"], LIM["COND_SCALE_MIN"] - 0.5),
    ("temperature", LIM["TEMPERATURE_MAX"], LIM["TEMPERATURE_MAX"] + 0.5),
    ("top_p", LIM["TOP_P_MAX"], LIM["TOP_P_MAX"] + 0.01),
    ("top_k", LIM["TOP_K_MIN"], LIM["TOP_K_MIN"] - 1),
    ("quality", LIM["QUALITY_MAX"], LIM["QUALITY_MAX"] + 1),
    ("quality", LIM["QUALITY_MIN"], LIM["QUALITY_MIN"] - 1),
])
def test_server_accepts_each_bound_and_refuses_past_it(server, field, ok, bad):
    body = {"prompt": "a limit", "seed": 1, field: bad}
    r = server.post("/generate", body)
    assert r.status_code == 422 and r.json()["error"]["param"] == field, r.text
    body[field] = ok
    r = server.post("/generate", body)
    assert r.status_code == 200, r.text
