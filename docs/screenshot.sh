#!/usr/bin/env bash
# docs/screenshot.sh — refreshes docs/screenshot.png: runs the headless-Chromium page test
# (tests/server/test_browser.py) against $BUILD/dalle-server (BUILD defaults to build; run
# `make deps` and `make` first) with DALLE_SCREENSHOT pointing here. The page after one
# generation: prompt "a red bicycle leaning against a brick wall", 6 images, seed 7, models/tiny
# (random weights, so the images are noise; the page and the ranking are real).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x .venv-test/bin/python ] && PY=.venv-test/bin/python
DALLE_SCREENSHOT="$PWD/docs/screenshot.png" BUILD="${BUILD:-build}" \
    "$PY" -m pytest -q -p no:cacheprovider tests/server/test_browser.py -k generates
echo "wrote docs/screenshot.png"
