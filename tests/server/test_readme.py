"""README's commands run as written.

Every ```sh block of README.md is run in order from the repository root, one command (line,
with its backslash continuations) at a time, unless the line before its fence says
`<!-- readme-test: skip (reason) -->`. A command that starts the server (`make run`,
`build/dalle-server …`) runs in the background until the next one starts or the test ends;
the test waits for its "listening" line and /ready. The only changes made to the commands:
port 8080 becomes a free port (the PORT variable of `make run`, the number elsewhere), so the
test can run beside another server, and HOME is a temporary folder (`make install` installs
there). A command must exit 0, and output that is a JSON object
must not be an error body. README's paths are those of the plain build, so the test runs
only there (BUILD unset or "build").
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import ROOT

README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
SERVER = re.compile(r"^(make run\b|build/dalle-server\b)")

pytestmark = pytest.mark.skipif(os.environ.get("BUILD", "build") != "build",
                                reason="README's commands use the plain build (build/)")


def sh_blocks(text):
    """[(first line number, skip reason or None, [command, …])] for every ```sh block."""
    blocks, lines = [], text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        m = SKIP.fullmatch(lines[i - 1].strip()) if i else None
        start, body = i + 1, []
        i += 1
        while lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        cmds, cur = [], ""
        for line in body:
            cur += line
            if cur.endswith("\\"):
                cur = cur[:-1] + " "
                continue
            if cur.strip() and not cur.strip().startswith("#"):
                cmds.append(cur.strip())
            cur = ""
        blocks.append((start, m.group(1) if m else None, cmds))
        i += 1
    return blocks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    """A README command that serves: started in its own session, stopped as a group."""

    def __init__(self, cmd, env, port):
        self.proc = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.time() + 600  # make run may build first
        for line in self.proc.stderr:
            if line.startswith("listening on "):
                break
            assert time.time() < deadline, f"{cmd!r}: no 'listening' line"
        else:
            raise AssertionError(f"{cmd!r} exited {self.proc.wait()} before listening")
        base = f"http://127.0.0.1:{port}"
        while requests.get(base + "/ready", timeout=10).status_code != 200:
            assert self.proc.poll() is None and time.time() < deadline, f"{cmd!r} never ready"
            time.sleep(0.1)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        assert self.proc.wait(timeout=60) in (0, 2, -signal.SIGTERM)


def test_every_sh_block_runs_or_says_why_not():
    blocks = sh_blocks(README.read_text())
    ran = [cmd for _, reason, cmds in blocks if reason is None for cmd in cmds]
    assert "make run" in ran and any(c.startswith("build/dalle-cli generate") for c in ran)
    assert all(reason.strip() for _, reason, _ in blocks if reason is not None)


def test_readme_commands_run_as_written(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
    env.pop("BUILD", None)
    env["PORT"] = str(port)
    env["HOME"] = str(tmp_path)
    server = None
    try:
        for line, reason, cmds in sh_blocks(README.read_text()):
            if reason is not None:
                continue
            for cmd in cmds:
                cmd = cmd.replace("8080", str(port))
                if SERVER.match(cmd):
                    if server:
                        server.stop()
                    server = Background(cmd, env, port)
                    continue
                r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, text=True,
                                   capture_output=True, timeout=600)
                assert r.returncode == 0, f"README line {line}: {cmd!r} → {r.returncode}\n{r.stderr}"
                out = r.stdout.strip()
                if out.startswith("{"):
                    assert "error" not in json.loads(out), f"README line {line}: {cmd!r} → {out[:300]}"
    finally:
        if server:
            server.stop()
