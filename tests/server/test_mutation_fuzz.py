"""Request-mutation fuzzing against the live server, on loopback: seeded random mutations of
valid raw requests (bytes flipped, inserted, deleted; headers repeated, dropped or given odd
Content-Length / Transfer-Encoding values; control bytes in the path; broken chunk framing;
truncation). Every reply must be a status line with a 1xx-4xx status (499: the client
half-closed before its generation ended) or 501 (or the connection closes without a reply),
never another 5xx; the server stays healthy throughout.
Bounded: FUZZ_REQUESTS requests (fewer under ASan) or FUZZ_SECONDS, whichever comes first;
a failing input is printed as Python bytes to paste into a raw-socket test."""
import concurrent.futures
import random
import re
import socket
import time

import pytest

from conftest import BIN, Server

SANITIZED = BIN.exists() and b"__asan_init" in BIN.read_bytes()
FUZZ_REQUESTS = 200 if SANITIZED else 1000
FUZZ_SECONDS = 60
SEED = 20261205

BODY = b'{"prompt": "a red square", "n": 1, "seed": 7}'
SEEDS = [
    b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Request-Id: abc\r\n\r\n",
    b"HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS /generate HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n"
    b"Access-Control-Request-Method: POST\r\n\r\n",
    b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n"
    b'{"prompt": "a cat"}',
    b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
    b"GET /metrics HTTP/1.0\r\n\r\n",
]
ODD = [b"\x00", b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"%00", b"%", b"\xff", b"\xc3",
       b"-1", b"+1", b"0x10", b"99999999999999999999", b"chunked", b"gzip", b",", b"\"", b"{",
       b"\\u0000", b"/../", b"?", b"#", b"HTTP/1.1", b"A" * 300]


def mutate(rng, req):
    head, sep, body = req.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        if op == 0 and len(lines) > 1:  # repeat a header
            lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(lines[1:]))
        elif op == 1 and len(lines) > 1:  # drop a header
            del lines[rng.randrange(1, len(lines))]
        elif op == 2:  # an odd framing header
            name = rng.choice([b"Content-Length", b"Transfer-Encoding", b"Host", b"Expect",
                               b"Connection"])
            value = rng.choice(ODD + [b"100-continue", b"0", b"5", b"70000", b"close"])
            lines.insert(rng.randrange(1, len(lines) + 1), name + b": " + value)
        elif op == 3:  # odd bytes in the request line
            line = lines[0]
            at = rng.randrange(len(line) + 1)
            lines[0] = line[:at] + rng.choice(ODD) + line[at:]
        elif op == 4:  # odd bytes in the body
            at = rng.randrange(len(body) + 1)
            body = body[:at] + rng.choice(ODD) + body[at + rng.randrange(3):]
        else:  # flip, insert or delete raw bytes anywhere
            raw = bytearray(b"\r\n".join(lines) + sep + body)
            if not raw:
                break
            at = rng.randrange(len(raw))
            kind = rng.randrange(3)
            if kind == 0:
                raw[at] = rng.randrange(256)
            elif kind == 1:
                raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                del raw[at:at + rng.randint(1, 8)]
            return bytes(raw)
    out = b"\r\n".join(lines) + sep + body
    if rng.random() < 0.1:
        out = out[:rng.randrange(len(out) + 1)]  # truncated
    return out


def send(port, req, half_close):
    """The reply's bytes ('' when the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(req)
            if half_close:  # the server sees the end at once instead of waiting for more
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data, end = b"", time.time() + 10
        while time.time() < end:
            try:
                part = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not part:
                break
            data += part
        return data


STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@pytest.fixture(scope="module")
def fuzzed():
    s = Server("--max-batch", "2", "--queue", "4", "--timeout", "2",
               env={"DALLE_RECEIVE_TIMEOUT": "2"})
    yield s
    assert s.stop() == 0


def test_mutated_requests(fuzzed):
    rng = random.Random(SEED)
    cases = [(mutate(rng, rng.choice(SEEDS)), rng.random() < 0.9) for _ in range(FUZZ_REQUESTS)]
    t0, statuses, done = time.time(), {}, 0
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for start in range(0, len(cases), 50):
            if time.time() - t0 > FUZZ_SECONDS:
                break
            batch = cases[start:start + 50]
            for (req, half), reply in zip(batch, ex.map(lambda c: send(fuzzed.port, *c), batch)):
                m = STATUS.match(reply)
                assert reply == b"" or m, f"not an HTTP reply to {req!r}: {reply[:200]!r}"
                status = int(m.group(1)) if m else 0
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500 or status == 501, f"{status} for {req!r}: {reply[:300]!r}"
                done += 1
            assert fuzzed.get("/health").status_code == 200
            assert fuzzed.proc.poll() is None
    print(f"{done} mutated requests in {time.time() - t0:.1f} s; statuses {sorted(statuses.items())}")
    assert done >= min(200, FUZZ_REQUESTS)
    assert len(statuses) > 5  # the mutations reach more than one answer
