"""The sampling default tools/demo/eval.py --sweep picks for the export (eval.choose_default):
accuracy first, so a setting below either accuracy bar is never chosen however varied its
images; a setting that meets every bar beats one that meets the accuracy bars only; then the
most distinct correct images. Needs python3-numpy and python3-pil (Debian).
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import eval as demo_eval  # noqa: E402


def row(k, top_in, top_held, distinct, distinct_ok):
    return {"top_k": k, "temperature": 1.0, "cond_scale": 1.0, "top_in_domain": top_in,
            "top_held_out": top_held, "distinct": distinct, "distinct_ok": distinct_ok}


def test_no_accurate_setting_gives_none():
    assert demo_eval.choose_default([row(2, 0.89, 0.90, 7.0, 6.0), row(4, 0.95, 0.74, 7.0, 6.0)]) is None


def test_inaccurate_settings_lose_however_varied():
    table = [row(2, 0.95, 0.80, 5.0, 4.0), row(32, 0.95, 0.60, 7.8, 5.5)]
    assert demo_eval.choose_default(table)["top_k"] == 2


def test_most_distinct_right_among_accurate_ones():
    table = [row(2, 0.99, 0.86, 4.9, 3.8), row(8, 0.99, 0.89, 5.9, 4.3), row(16, 0.99, 0.88, 6.0, 4.2)]
    assert demo_eval.choose_default(table)["top_k"] == 8


def test_every_bar_met_beats_more_distinct_right():
    table = [row(8, 0.95, 0.80, 5.9, 5.6), row(16, 0.92, 0.76, 6.1, 5.1)]
    assert demo_eval.choose_default(table)["top_k"] == 16
