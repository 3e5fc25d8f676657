#!/usr/bin/env python3
"""Soak test (not run by CI): start build/dalle-server on a model (models/tiny by default) and
drive it for --seconds with a mix of traffic from a few threads on loopback — generations
(plain and streamed, some abandoned mid-way), health and info probes, named bad inputs,
chunked bodies over the limit, framing errors, trickling clients cut by --receive-timeout
and connections dropped half-way — while sampling the server's resident memory (VmRSS) and
open file descriptors every --every seconds. Prints the samples and a summary (start, end,
peak; growth over the second half, when the heap has warmed up) and exits 1 when the server
died or answered a 5xx other than 501/503.

    python3 bench/soak.py --seconds 600          # the figures in README
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def raw(port, data, half_close=True, wait=5.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                part = s.recv(65536)
                if not part:
                    return out
                out += part
    except OSError:
        return b""


def status_of(reply):
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def post(body):
    return b"POST /generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)


def worker(port, stop, stats, lock, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            st = status_of(one(port, rng))
        except OSError:
            st = -1  # the client side failed (counted; the server is checked separately)
        with lock:
            stats[st] = stats.get(st, 0) + 1


def one(port, rng):
    """One request of a random kind; the reply's bytes."""
    kind = rng.choice(["generate", "stream", "abandon", "health", "info", "bad", "chunked",
                       "framing", "trickle", "drop"])
    if kind == "generate":
        reply = raw(port, post(b'{"prompt": "a red square", "n": 1, "seed": %d}' % rng.randrange(99)), False, 60)
    elif kind == "stream":
        reply = raw(port, post(b'{"prompt": "a cat", "stream": true, "preview_every": 64}'), False, 60)
    elif kind == "abandon":  # leave while the generation runs
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(post(b'{"prompt": "a dog", "n": 2}'))
            time.sleep(rng.random() * 0.2)
        reply = b"HTTP/1.1 499 "
    elif kind == "health":
        reply = raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    elif kind == "info":
        reply = raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    elif kind == "bad":
        reply = raw(port, post(rng.choice([b"{", b'{"prompt": ""}', b'{"prompt": "a", "n": 0}',
                                           b'{"prompt": "\\u3000"}', b"[" * 40])))
    elif kind == "chunked":
        reply = raw(port, b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"4000\r\n" + b" " * 0x4000 + b"\r\n" * 1 + (b"4000\r\n" + b" " * 0x4000 + b"\r\n") * 4,
                    False)
    elif kind == "framing":
        reply = raw(port, rng.choice([
            b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET /health%00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/1.1\r\n\r\n",
            b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"]))
    elif kind == "trickle":  # cut by --receive-timeout
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            end = time.time() + 3
            try:
                while time.time() < end:
                    s.sendall(b"X")
                    time.sleep(0.5)
                reply = s.recv(4096)
            except OSError:
                reply = b""
    else:  # drop half-way through the headers
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Le")
        reply = b""
    return reply


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "tiny"))
    ap.add_argument("--bin", default=os.path.join(ROOT, os.environ.get("BUILD", "build"), "dalle-server"))
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
    env["DALLE_RECEIVE_TIMEOUT"] = "2"
    proc = subprocess.Popen([a.bin, "--model", a.model, "--port", "0", "--max-batch", "4",
                             "--queue", "32"], stderr=subprocess.PIPE, env=env, text=True)
    port = int(proc.stderr.readline().rsplit(":", 1)[1])
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    for _ in range(1200):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    stop, lock, stats = threading.Event(), threading.Lock(), {}
    threads = [threading.Thread(target=worker, args=(port, stop, stats, lock, i), daemon=True)
               for i in range(a.threads)]
    for t in threads:
        t.start()
    samples, t0 = [], time.time()
    print("    s   rss_MiB  fds")
    while time.time() - t0 < a.seconds and proc.poll() is None:
        samples.append((time.time() - t0, rss_kib(proc.pid) / 1024, fds(proc.pid)))
        print("%5.0f  %8.1f  %3d" % samples[-1], flush=True)
        time.sleep(a.every)
    alive = proc.poll() is None
    if alive:
        samples.append((time.time() - t0, rss_kib(proc.pid) / 1024, fds(proc.pid)))
    stop.set()
    for t in threads:
        t.join(timeout=90)
    if alive:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    bad = {k: v for k, v in stats.items() if k >= 500 and k not in (501, 503)}
    print(json.dumps({
        "seconds": round(samples[-1][0]), "requests": sum(stats.values()),
        "statuses": dict(sorted(stats.items())),
        "rss_mib": {"start": round(samples[0][1], 1), "end": round(samples[-1][1], 1),
                    "peak": round(max(s[1] for s in samples), 1),
                    "second_half_growth": round(half[-1][1] - half[0][1], 1)},
        "fds": {"start": samples[0][2], "end": samples[-1][2], "peak": max(s[2] for s in samples)},
        "server_alive": alive, "exit": proc.returncode, "unexpected_5xx": bad}, indent=1))
    return 0 if alive and proc.returncode == 0 and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
