"""The front door against slow, greedy and malformed clients (README, "Connections and
limits"): trickling connections, connections over --max-conns, chunked bodies over
--body-limit, framing errors, control bytes in the path, protocol errors, blank Unicode
prompts. Raw sockets on loopback; the slow clients come from 127.0.0.2 so that the probes
from 127.0.0.1 have their own per-address allowance. Settings that older builds lack are
passed as environment variables, so the same tests can be run against one (they fail)."""
import json
import select
import socket
import time

import pytest
import requests

from conftest import Server

RECEIVE_S = 3  # --receive-timeout of the module's server


@pytest.fixture(scope="module")
def guarded():
    s = Server("--max-batch", "2", env={"DALLE_RECEIVE_TIMEOUT": str(RECEIVE_S)})
    yield s
    assert s.stop() == 0


def connect(port, src="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, limit_s):
    """Everything until the server closes, or what came within limit_s; (bytes, closed)."""
    data, end = b"", time.time() + limit_s
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            part = s.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not part:
            return data, True
        data += part
    return data, False


def exchange(port, request, limit_s=5):
    """Send request, read until the server closes; (bytes, seconds, closed)."""
    with connect(port) as s:
        t0 = time.time()
        s.sendall(request)
        data, closed = read_all(s, limit_s)
        return data, time.time() - t0, closed


def split(data):
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def assert_json_error(data, status, code):
    head, body = split(data)
    assert head.startswith(f"HTTP/1.1 {status} "), data[:300]
    assert head.count("HTTP/1.1") == 1, "one status line"
    assert "Content-Type: application/json" in head, head
    assert json.loads(body)["error"]["code"] == code, body


# ---- 1. slow clients --------------------------------------------------------------------

def test_trickling_clients_cannot_lock_out_others(guarded):
    """300 connections from one address send a request's headers a byte every 0.5 s. At most
    --per-ip-conns (64) of them are taken, the others are closed at once; the ones taken get
    a 408 once --receive-timeout has passed, bytes still trickling; /health from another
    address is answered promptly throughout."""
    socks, t0 = [], time.time()
    for _ in range(300):
        s = connect(guarded.port, "127.0.0.2")
        s.setblocking(False)
        socks.append(s)
    for s in socks:
        try:
            s.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            pass
    alive, closed_at, answers = set(socks), {}, {}
    worst_probe, next_drip = 0.0, time.time()
    while time.time() - t0 < RECEIVE_S + 6:
        if time.time() >= next_drip:
            for s in list(alive):
                try:
                    s.send(b"a")
                except OSError:
                    pass
            next_drip += 0.5
        readable, _, _ = select.select(list(alive), [], [], 0.05)
        for s in readable:
            try:
                part = s.recv(4096)
            except OSError:
                part = b""
            answers[s] = answers.get(s, b"") + part
            if not part:
                alive.discard(s)
                closed_at[s] = time.time() - t0
        t = time.time()
        assert requests.get(guarded.url("/health"), timeout=5).status_code == 200
        worst_probe = max(worst_probe, time.time() - t)
    for s in socks:
        s.close()
    refused = [s for s, at in closed_at.items() if at < 1.0 and not answers.get(s)]
    timed_out = [s for s, at in closed_at.items() if answers.get(s, b"").startswith(
        b"HTTP/1.1 408 ")]
    assert not alive, f"{len(alive)} trickling connections still open"
    assert len(refused) >= 300 - 64 - 2, f"only {len(refused)} refused at once"
    assert len(timed_out) >= 60, f"{len(timed_out)} got a 408"
    assert all(RECEIVE_S - 0.5 <= closed_at[s] <= RECEIVE_S + 2 for s in timed_out), sorted(
        closed_at[s] for s in timed_out)
    assert worst_probe < 2, worst_probe


def test_idle_connection_closed_after_timeout():
    """A connection that never sends its request line is closed after --timeout, silently."""
    s = Server("--timeout", "2")
    try:
        with connect(s.port) as c:
            t0 = time.time()
            data, closed = read_all(c, 8)
            assert closed and data == b"" and 1.5 < time.time() - t0 < 4.5
    finally:
        assert s.stop() == 0


# ---- 5. over --max-conns ----------------------------------------------------------------

def test_connections_over_max_conns_are_refused_at_once():
    s = Server("--max-conns", "20", "--per-ip-conns", "0")
    try:
        held, deadline = [], time.time() + 10
        while len(held) < 20:  # accepted for sure: the server asked for the body, never sent
            c = connect(s.port)
            c.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            try:
                reply = c.recv(4096)
            except ConnectionResetError:
                reply = b""
            if reply.startswith(b"HTTP/1.1 100 "):
                held.append(c)
                continue
            # refused: the readiness probe's connection still counted; try again
            assert reply == b"" and time.time() < deadline, reply
            c.close()
            time.sleep(0.05)
        t0 = time.time()
        with connect(s.port) as extra:
            try:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
            data, closed = read_all(extra, 10)
        assert closed and data == b"", data
        assert time.time() - t0 < 2
        for c in held:
            c.close()
        deadline = time.time() + 10
        while True:
            try:
                if s.get("/health").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "never served again"
            time.sleep(0.1)
    finally:
        assert s.stop() == 0


# ---- 2. chunked bodies over --body-limit ------------------------------------------------

def test_chunked_body_is_cut_off_at_the_limit(guarded):
    """A chunked upload that never ends: the 413 comes as soon as --body-limit (64 KiB) is
    passed, not after the upload; the server stops reading (sending fails soon after)."""
    with connect(guarded.port) as c:
        c.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk, sent, answered = b"4000\r\n" + b" " * 0x4000 + b"\r\n", 0, False
        while sent < 64 << 20 and not answered:
            try:
                c.sendall(chunk)
            except OSError:
                break
            sent += 0x4000
            answered = bool(select.select([c], [], [], 0)[0])
        data, _ = read_all(c, 5)
    assert sent < 32 << 20, f"{sent} bytes taken without an answer"
    assert_json_error(data, 413, "body_too_large")


# ---- 3. framing errors ------------------------------------------------------------------

@pytest.mark.parametrize("te", [b"gzip", b"gzip, chunked", b"xchunked", b"chunked, gzip",
                                b"identity"])
@pytest.mark.parametrize("target", [b"POST /generate", b"GET /health"])
def test_unsupported_transfer_encoding_is_501(guarded, te, target):
    data, took, closed = exchange(
        guarded.port, target + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
        b"\r\n\r\n{}")
    assert closed and took < 2
    assert_json_error(data, 501, "unsupported_transfer_encoding")


def test_huge_chunk_size_with_data_is_413_at_once(guarded):
    data, took, closed = exchange(
        guarded.port, b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7fffffffffffffff\r\n" + b" " * 70000)
    assert closed and took < 2
    assert_json_error(data, 413, "body_too_large")


def test_stalled_chunk_is_408_at_the_receive_deadline(guarded):
    data, took, closed = exchange(
        guarded.port, b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7fffffffffffffff\r\nabc", limit_s=RECEIVE_S + 5)
    assert closed and RECEIVE_S - 0.5 < took < RECEIVE_S + 2, took
    assert_json_error(data, 408, "request_timeout")
    guarded.wait_log(r"\S+ access id=\S+ client=\S+ method=POST route=/generate path=/generate "
                     r"status=408 error=request_timeout .*")


# ---- 4. control bytes in the path -------------------------------------------------------

@pytest.mark.parametrize("path", [b"/health%00", b"/health\x00/x", b"/metrics%00x",
                                  b"/health%0a", b"/health%0D%0AX:%20y", b"/health%7f",
                                  b"/health%1F", b"/health\x01", b"/generate%00"])
def test_control_byte_in_path_is_400(guarded, path):
    data, took, _ = exchange(guarded.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
    assert_json_error(data, 400, "bad_path")


@pytest.mark.parametrize("path,status", [("/health?x=%00", 200), ("/health/", 404),
                                         ("/HEALTH", 404), ("/health%2500", 404),
                                         ("//health", 404), ("/health%20", 404)])
def test_routes_match_exact_paths(guarded, path, status):
    data, _, _ = exchange(guarded.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n".encode())
    assert split(data)[0].startswith(f"HTTP/1.1 {status} "), data[:200]


# ---- 6. protocol errors -----------------------------------------------------------------

def test_missing_host_is_a_json_400(guarded):
    data, _, closed = exchange(guarded.port, b"GET /health HTTP/1.1\r\n\r\n")
    assert_json_error(data, 400, "missing_host")
    data, _, _ = exchange(guarded.port, b"GET /health HTTP/1.0\r\n\r\n")  # 1.0 needs none
    assert split(data)[0].startswith("HTTP/1.1 200 ")


@pytest.mark.parametrize("value,status", [(b"-1", 400), (b"+20", 400), (b"0x14", 400),
                                          (b"20, 20", 400), (b"18446744073709551617", 413)])
def test_malformed_content_length_is_refused_by_libmicrohttpd(guarded, value, status):
    """Documented exception (README): libmicrohttpd 0.9.75 refuses a Content-Length that is
    not a decimal number below 2^64 before the server sees the request, with its own HTML
    body, and writes its status line and headers twice. What holds: a 4xx status line at
    once, then the connection closes. Should a newer libmicrohttpd answer otherwise, this
    test fails and README must change with it."""
    data, took, closed = exchange(guarded.port, b"POST /generate HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: " + value + b"\r\n\r\n")
    assert closed and took < 2
    head, body = split(data)
    assert head.startswith(f"HTTP/1.1 {status} ")
    assert data.count(f"HTTP/1.1 {status} ".encode()) == 2, data  # 0.9.75's doubled header
    assert b"<html>" in body


# ---- 7. prompts blank after Unicode whitespace --------------------------------------------

@pytest.mark.parametrize("prompt", ["\u00a0", "\u200b", "\u3000", "\ufeff", "\u2028\u2029",
                                    " \u00a0\u200b\u200c\u200d\u2060\u3000\ufeff\u180e\t",
                                    "\u3164\u034f\u00ad"])
@pytest.mark.parametrize("path,status", [("/generate", 422), ("/v1/images/generations", 400)])
def test_unicode_blank_prompt_is_refused(guarded, prompt, path, status):
    r = guarded.post(path, {"prompt": prompt})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == "empty_prompt"


def test_prompt_with_unicode_spaces_around_words_is_generated(guarded):
    r = guarded.post("/generate", {"prompt": "\u3000a\u00a0cat\u200b", "seed": 1})
    assert r.status_code == 200, r.text


# ---- 8. hostile model folders -----------------------------------------------------------

def model_copy(tmp_path):
    """models/tiny as symbolic links in tmp_path (each file can then be replaced)."""
    from conftest import MODEL
    for f in MODEL.iterdir():
        (tmp_path / f.name).symlink_to(f)
    return tmp_path


def failed_start(model_dir):
    """Start on model_dir; the process must exit 1 within 60 s. Returns its log."""
    s = Server("--model", str(model_dir), wait_ready=False)
    try:
        assert s.proc.wait(timeout=60) == 1
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    s._reader.join(timeout=10)
    return "\n".join(s.log)


@pytest.mark.parametrize("name", ["config.json", "decoder.safetensors", "merges.txt",
                                  "vocab.json", "clip_merges.txt"])
def test_fifo_in_the_model_folder_fails_fast(tmp_path, name):
    import os
    d = model_copy(tmp_path)
    (d / name).unlink()
    os.mkfifo(d / name)
    log = failed_start(d)
    assert f"{d / name}: not a regular file (a FIFO)" in log, log


@pytest.mark.parametrize("bits", [b"\x00\x7e", b"\x00\x7c", b"\x00\xfc"], ids=["nan", "inf", "-inf"])
def test_non_finite_weight_fails_the_start(tmp_path, bits):
    import struct
    from conftest import MODEL
    d = model_copy(tmp_path)
    raw = bytearray((MODEL / "decoder.safetensors").read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    t = json.loads(raw[8:8 + n])["lm_head.weight"]
    assert t["dtype"] == "F16"
    at = 8 + n + t["data_offsets"][0] + 2 * 17  # element 17
    raw[at:at + 2] = bits
    (d / "decoder.safetensors").unlink()
    (d / "decoder.safetensors").write_bytes(bytes(raw))
    log = failed_start(d)
    assert "decoder.safetensors: tensor 'lm_head.weight' holds NaN or infinity (element 17)" in log, log
