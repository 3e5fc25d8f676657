"""Checkpoint converter package (entry point: tools/convert.py; see convert.cli)."""
