#!/usr/bin/env python3
"""convert.py — published checkpoints → a dalle-server model directory. See tools/convert/cli.py
(or --help) for the formats; needs only Python 3 and numpy (no torch, jax or flax)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from convert.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
