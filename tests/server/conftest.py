"""Shared fixtures for the dalle-server end-to-end tests.

Each test module starts the real binary ($BUILD/dalle-server, BUILD defaults to "build") on
port 0 with models/tiny, reads the port from the first log line ("listening on HOST:PORT")
and waits for /ready. Timeouts are generous: CI has 2 cores and may run under ASan.
"""
import base64
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import threading
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / os.environ.get("BUILD", "build") / "dalle-server"
MODEL = ROOT / "models" / "tiny"
START_TIMEOUT = 120
REQ_TIMEOUT = 300


class Server:
    def __init__(self, *args, env=None, wait_ready=True, binary=BIN):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
        full_env.update(env or {})
        cmd = [str(binary), "--model", str(MODEL), "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=full_env, text=True)
        first = self.proc.stderr.readline()
        m = re.fullmatch(r"listening on (\S+):(\d+)\n", first)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected first log line: {first!r} {self.proc.stderr.read()}")
        self.base = f"http://{m.group(1)}:{m.group(2)}"
        self.port = int(m.group(2))
        self.log = [first.rstrip("\n")]
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if wait_ready:
            self.wait_ready()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_ready(self):
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if requests.get(self.url("/ready"), timeout=10).status_code == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("server never became ready")

    def url(self, path):
        return self.base + path

    def post(self, path, body=None, data=None, **kw):
        kw.setdefault("timeout", REQ_TIMEOUT)
        if body is not None:
            data = json.dumps(body)
        return requests.post(self.url(path), data=data, **kw)

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.get(self.url(path), **kw)

    def metrics(self):
        out = {}
        for line in self.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def wait_metric(self, key, pred, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.metrics().get(key, 0.0)
            if pred(v):
                return v
            time.sleep(0.02)
        raise AssertionError(f"{key} never satisfied the condition (last {v})")

    def wait_log(self, pattern, timeout=30):
        """The first log line matching the regex (the log is read by a thread, and MHD writes
        an access line when the connection's request completes, possibly after the reply)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.log):
                if re.fullmatch(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matches {pattern!r}; last lines {self.log[-5:]}")

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc


@pytest.fixture(scope="module")
def server():
    s = Server("--max-batch", "8", "--queue", "64")
    yield s
    assert s.stop() == 0


def _sof(b):
    """a JPEG's SOF segment (after its length field)"""
    assert b[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(b):
        assert b[i] == 0xFF
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return b[i + 4:i + 2 + length]
        i += 2 + length
    raise AssertionError("no SOF marker")


def jpeg_size(b):
    """(width, height) from a JPEG's SOF marker."""
    h, w = struct.unpack(">HH", _sof(b)[1:5])
    return w, h


def jpeg_subsampling(b):
    """444, 422 or 420 from the luma sampling factors of a 3-component JPEG's SOF marker"""
    sof = _sof(b)
    assert sof[5] == 3, "not a colour JPEG"
    return {0x11: 444, 0x21: 422, 0x22: 420}[sof[7]]


def decode_images(images):
    return [base64.b64decode(s, validate=True) for s in images]
