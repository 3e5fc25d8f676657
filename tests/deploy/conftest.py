"""Shared paths for the deployment tests (docker/, .dockerignore, the loopback scale-out)."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BUILD = ROOT / os.environ.get("BUILD", "build")
SERVER_BIN = BUILD / "dalle-server"
