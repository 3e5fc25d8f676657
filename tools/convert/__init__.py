"""Checkpoint converter package (entry point: tools/convert.py; options in convert.args, the conversion in convert.cli)."""
