#!/usr/bin/env python3
"""Scale-out and failover of dalle-server behind nginx, on loopback, with docker/nginx.conf.

No container engine is needed: N dalle-server processes listen on 127.0.0.1 (port 0) and
Debian's nginx runs the same docker/nginx.conf, its placeholders filled in (the line holding
${DALLE_BACKEND} once per replica). Then:

  throughput  the same batch of generation requests from C concurrent clients through nginx
              in front of 1 replica, then in front of all N: images/s and the ratio;
  failover    R requests from C clients through nginx over N replicas; when 30 % are done one
              replica is killed with SIGKILL, at 60 % another gets SIGTERM (drains, exits 0).

Every request is classified:
  served   200 whose image equals the reference image of its seed (computed on one replica
           beforehand: seeded generation is deterministic) and whose X-Request-Id is ours;
  retried  served requests that nginx sent to more than one replica (its access log lists
           every upstream tried, as $upstream_addr "a, b");
  failed   a clear error: 5xx or 429 with a JSON error body;
  bad      anything else (a wrong image, a non-JSON error, a connection error) — must be 0;
  hung     no answer within --hang seconds — must be 0.

Used by tests/deploy/test_scaleout.py; bench/scaleout.sh runs it with bigger numbers.
  python3 tests/deploy/scaleout.py [--bin build/dalle-server] [--model models/tiny]
      [--replicas 3] [--requests 200] [--clients 16] [--throughput-requests 48] [--json]
"""
import argparse
import base64
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "docker" / "nginx.conf"
PROMPTS = ["a red bicycle", "an avocado armchair", "a lighthouse at dusk", "a cat in a hat"]
START_TIMEOUT = 180


def nginx_binary():
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def render(template, backends, port, access_log):
    """docker/nginx.conf with its placeholders filled in; the ${DALLE_BACKEND} line is repeated
    once per backend."""
    out = []
    for line in template.splitlines():
        if line.lstrip().startswith("#"):
            out.append(line)
        elif "${DALLE_BACKEND}" in line:
            out.extend(line.replace("${DALLE_BACKEND}", b) for b in backends)
        else:
            out.append(line.replace("${NGINX_PORT}", f"127.0.0.1:{port}")
                       .replace("${NGINX_ACCESS_LOG}", str(access_log)))
    text = "\n".join(out) + "\n"
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    left = re.findall(r"\$\{\w+\}", code)
    if left:
        raise ValueError(f"unfilled placeholders {left}")
    return text


class Replica:
    def __init__(self, binary, model, args=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
        cmd = [str(binary), "--model", str(model), "--port", "0", *args]
        # own session: like separate containers, each replica is its own scheduling group
        # where the kernel groups CPU time by session (autogroup), not one group shared with
        # the clients
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env, start_new_session=True)
        first = self.proc.stderr.readline()
        m = re.fullmatch(r"listening on (\S+):(\d+)\n", first)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected first log line {first!r}")
        self.addr = f"127.0.0.1:{m.group(2)}"
        self.log = [first.rstrip("\n")]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_ready(self):
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited {self.proc.returncode}: {self.log[-3:]}")
            try:
                if request(self.addr, "GET", "/ready", timeout=10)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("replica never became ready")

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.reader.join(timeout=10)


class Nginx:
    def __init__(self, backends, workdir, tag):
        self.bin = nginx_binary()
        if not self.bin:
            raise RuntimeError("nginx is not installed (make deps)")
        self.dir = pathlib.Path(workdir) / f"nginx-{tag}"
        for sub in ("tmp", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.access_log = self.dir / "logs" / "access.log"
        self.error_log = self.dir / "logs" / "error.log"
        for attempt in range(5):
            self.port = free_port()
            (self.dir / "dalle.conf").write_text(
                render(TEMPLATE.read_text(), backends, self.port, self.access_log))
            tmp = self.dir / "tmp"
            (self.dir / "nginx.conf").write_text(f"""\
daemon off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.error_log} warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {self.dir}/dalle.conf;
}}
""")
            self.proc = subprocess.Popen(
                [self.bin, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                 "-e", str(self.error_log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 30
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.proc.kill()
            err = self.proc.stderr.read()
            if "Address already in use" not in err:
                raise RuntimeError(f"nginx did not start: {err}")
        raise RuntimeError("nginx found no free port")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def log_entries(self):
        """rid → list of upstream addresses tried and their statuses."""
        out = {}
        if not self.access_log.exists():
            return out
        for line in self.access_log.read_text().splitlines():
            m = re.search(r'rid=(\S+) upstream="([^"]*)" ustatus="([^"]*)"', line)
            if m:
                ups = [u.strip() for u in re.split(r"[,:]\s", m.group(2)) if u.strip()]
                out[m.group(1)] = (ups, m.group(3))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(procs):
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    for p in procs:
        try:
            f = pathlib.Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(addr, method, path, body=None, headers=None, timeout=30):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def gen_body(i):
    return {"prompt": PROMPTS[i % len(PROMPTS)], "n": 1, "seed": 1000 + i % len(PROMPTS)}


def references(addr):
    """The image of every (prompt, seed) used, from one replica directly."""
    ref = {}
    for i in range(len(PROMPTS)):
        st, _, body = request(addr, "POST", "/generate", json.dumps(gen_body(i)), timeout=300)
        assert st == 200, (st, body[:200])
        ref[i % len(PROMPTS)] = json.loads(body)["images"][0]
    return ref


def drive(addr, count, clients, ref, tag, hang_s, on_progress=None):
    """count requests from `clients` threads; returns (per-request results, seconds)."""
    results = [None] * count
    lock = threading.Lock()
    nxt = [0]
    done = [0]

    def one(i):
        rid = f"{tag}-{i}"
        body = json.dumps(gen_body(i))
        try:
            st, hdr, data = request(addr, "POST", "/generate", body,
                                    {"Content-Type": "application/json", "X-Request-Id": rid},
                                    timeout=hang_s)
        except socket.timeout:
            return {"rid": rid, "kind": "hung"}
        except OSError as e:
            return {"rid": rid, "kind": "bad", "why": f"connection error {e!r}"}
        if st == 200:
            try:
                j = json.loads(data)
                ok = j["images"][0] == ref[i % len(PROMPTS)] and j["seed"] == gen_body(i)["seed"]
                ok = ok and base64.b64decode(j["images"][0])[:2] == b"\xff\xd8"
            except (ValueError, KeyError, IndexError):
                ok = False
            if not ok:
                return {"rid": rid, "kind": "bad", "why": "200 with a wrong body"}
            if hdr.get("X-Request-Id") != rid:
                return {"rid": rid, "kind": "bad", "why": f"X-Request-Id {hdr.get('X-Request-Id')}"}
            return {"rid": rid, "kind": "served"}
        try:
            err = json.loads(data)["error"]
            clear = (st >= 500 or st == 429) and err["code"] and err["message"]
        except (ValueError, KeyError, TypeError):
            clear = False
        if clear:
            return {"rid": rid, "kind": "failed", "status": st, "code": err["code"]}
        return {"rid": rid, "kind": "bad", "why": f"status {st} body {data[:120]!r}"}

    def worker():
        while True:
            with lock:
                i = nxt[0]
                if i >= count:
                    return
                nxt[0] += 1
            try:
                r = one(i)
            except Exception as e:  # never lose a request to a bug in this harness
                r = {"rid": f"{tag}-{i}", "kind": "bad", "why": f"client exception {e!r}"}
            with lock:
                results[i] = r
                done[0] += 1
                n = done[0]
            if on_progress:
                on_progress(n)

    t0 = time.time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.time() - t0


def run(binary, model, replicas=3, requests_=200, clients=16, tput_requests=48,
        hang_s=300, replica_args=("--threads", "1", "--max-batch", "4", "--queue", "32",
                                  "--drain", "60"), log=print):
    work = tempfile.mkdtemp(prefix="dalle-scaleout-")
    reps, lbs = [], []
    report = {"replicas": replicas, "clients": clients, "requests": requests_,
              "replica_args": list(replica_args), "cpus": os.cpu_count(),
              "loadavg_before": round(os.getloadavg()[0], 2)}
    try:
        reps = [Replica(binary, model, replica_args) for _ in range(replicas)]
        for r in reps:
            r.wait_ready()
        log(f"replicas ready: {[r.addr for r in reps]}")
        ref = references(reps[0].addr)

        # throughput: 1 replica, then all of them, each behind its own nginx (skipped with 0)
        for n in ((1, replicas) if tput_requests > 0 else ()):
            lb = Nginx([r.addr for r in reps[:n]], work, f"tput{n}")
            lbs.append(lb)
            cpu0 = cpu_seconds([r.proc for r in reps[:n]])
            res, secs = drive(lb.addr, tput_requests, clients, ref, f"t{n}", hang_s)
            cpu = cpu_seconds([r.proc for r in reps[:n]]) - cpu0
            lb.stop()
            kinds = [r["kind"] for r in res]
            if kinds.count("served") != tput_requests:
                raise AssertionError(f"throughput run with {n} replica(s) not all served: "
                                     f"{[r for r in res if r['kind'] != 'served'][:3]}")
            report[f"images_per_s_{n}"] = round(tput_requests / secs, 3)
            # CPU the replicas got: tells "more work per image" from "no more CPU to be had"
            report[f"replica_cpu_s_per_image_{n}"] = round(cpu / tput_requests, 3)
            report[f"replica_cpu_use_{n}"] = round(cpu / secs, 2)
            log(f"throughput {n} replica(s): {tput_requests} images in {secs:.1f} s = "
                f"{tput_requests / secs:.2f} images/s; replicas used {cpu / secs:.2f} CPUs, "
                f"{cpu / tput_requests:.3f} CPU s per image")
        if tput_requests > 0:
            report["throughput_ratio"] = round(report[f"images_per_s_{replicas}"] /
                                               report["images_per_s_1"], 2)
            report["loadavg_after_throughput"] = round(os.getloadavg()[0], 2)

        # failover
        lb = Nginx([r.addr for r in reps], work, "failover")
        lbs.append(lb)
        victim_kill, victim_term = reps[0], reps[1]
        events = {}
        ev_lock = threading.Lock()

        def on_progress(n):
            with ev_lock:
                if "kill" not in events and n >= requests_ * 0.3:
                    victim_kill.proc.send_signal(signal.SIGKILL)
                    events["kill"] = (n, time.time())
                    log(f"SIGKILL {victim_kill.addr} after {n} responses")
                elif "kill" in events and "term" not in events and n >= requests_ * 0.6:
                    victim_term.proc.send_signal(signal.SIGTERM)
                    events["term"] = (n, time.time())
                    log(f"SIGTERM {victim_term.addr} after {n} responses")

        res, secs = drive(lb.addr, requests_, clients, ref, "f", hang_s, on_progress)
        term_rc = victim_term.stop(timeout=120)
        kill_rc = victim_kill.stop(timeout=30)
        time.sleep(0.5)  # nginx writes the access line after the response
        entries = lb.log_entries()
        counts = {k: 0 for k in ("served", "retried", "failed", "bad", "hung")}
        via = {"killed": 0, "drained": 0}
        for r in res:
            counts[r["kind"]] += 1
            ups = entries.get(r["rid"], ([], ""))[0]
            if r["kind"] == "served" and len(ups) > 1:
                counts["retried"] += 1
                via["killed"] += victim_kill.addr in ups[:-1]
                via["drained"] += victim_term.addr in ups[:-1]
        report["failover"] = {
            **counts, "seconds": round(secs, 1),
            "retried_away_from_killed": via["killed"], "retried_away_from_drained": via["drained"],
            "kill_after": events.get("kill", (None,))[0], "term_after": events.get("term", (None,))[0],
            "sigterm_exit": term_rc, "sigkill_exit": kill_rc,
            "failures": sorted({f"{r['status']} {r['code']}" for r in res if r["kind"] == "failed"}),
            "bad_examples": [r for r in res if r["kind"] == "bad"][:5],
            "survivor_ready": request(reps[2].addr, "GET", "/ready")[0] if replicas > 2 else None,
        }
        if replicas > 2:  # the survivor still drains and exits cleanly
            report["failover"]["survivor_exit"] = reps[2].stop(timeout=120)
        log("failover: " + json.dumps(report["failover"]))
        return report
    finally:
        for lb in lbs:
            lb.stop()
        for r in reps:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        report["workdir"] = work
        if os.environ.get("DALLE_SCALEOUT_KEEP") is None:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / os.environ.get("BUILD", "build") / "dalle-server"))
    ap.add_argument("--model", default=str(ROOT / "models" / "tiny"))
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--throughput-requests", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="--threads of each replica")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args()
    args = ("--threads", str(a.threads), "--max-batch", str(a.max_batch), "--queue", "32",
            "--drain", "60")
    rep = run(a.bin, a.model, a.replicas, a.requests, a.clients, a.throughput_requests,
              replica_args=args, log=(lambda s: print(s, file=sys.stderr)))
    if a.json:
        print(json.dumps(rep, indent=2))
    else:
        f = rep["failover"]
        if "throughput_ratio" in rep:
            print(f"{a.replicas}-vs-1 throughput: {rep['images_per_s_1']} → "
                  f"{rep[f'images_per_s_{a.replicas}']} images/s (×{rep['throughput_ratio']})")
        print(f"failover: served {f['served']} (retried {f['retried']}), failed {f['failed']}, "
              f"bad {f['bad']}, hung {f['hung']}")
    f = rep["failover"]
    return 0 if f["bad"] == 0 and f["hung"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
