#!/usr/bin/env python3
"""convert.py — published checkpoints → a dalle-server model directory. See tools/convert/args.py
(or --help) for the formats; needs only Python 3 and numpy (no torch, jax or flax). The options
are parsed before numpy is imported, so --help and usage errors work without it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from convert.args import build_parser  # noqa: E402


def main():
    args = build_parser().parse_args()
    try:
        import numpy  # noqa: F401
    except ModuleNotFoundError:
        print("convert.py: needs numpy (apt install python3-numpy, or pip install numpy)", file=sys.stderr)
        return 1
    from convert.cli import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
