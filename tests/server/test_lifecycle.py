"""Queue bound (429 + Retry-After), queue deadline (503, never run), client disconnects
(cancelled, slots freed), SIGTERM drain (new connections refused, nothing accepted is lost,
exit 0) and a device fault
(every request 503, unhealthy, exit 3).

The slow request is n=16 images on a --max-batch 16 server: a few seconds on the tiny model,
long enough to observe it in flight via /metrics. Waits poll /metrics instead of sleeping."""
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import Server

SLOW = {"prompt": "a slow request", "n": 16, "seed": 5}


@pytest.fixture
def small():
    s = Server("--max-batch", "16", "--queue", "1", "--deadline", "300")
    yield s
    assert s.stop() == 0


def in_flight(s):
    return s.wait_metric("dalle_requests_in_flight", lambda v: v == 1)


def test_queue_full_gets_429_with_retry_after(small):
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        running = ex.submit(small.post, "/generate", SLOW)
        in_flight(small)
        queued = ex.submit(small.post, "/generate", {"prompt": "queued", "seed": 1})
        small.wait_metric("dalle_queue_size", lambda v: v == 1)
        r = small.post("/generate", {"prompt": "one too many", "seed": 1})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        err = r.json()["error"]
        assert err["code"] == "overloaded" and err["type"] == "rate_limit_error"
        assert running.result().status_code == 200
        assert queued.result().status_code == 200
    m = small.metrics()
    assert m['dalle_request_failures_total{err="overloaded"}'] == 1
    # counted when the connection completes, which may trail the reply
    small.wait_metric('dalle_requests_total{route="/generate",status="429"}', lambda v: v == 1)


# A batch-filling request long enough to outlast the 1 s queue deadline with a wide margin:
# 64 images take ≈ 3.6 s on an idle 2-core machine (16 took 0.9 s, which made this flaky).
# Under ASan on a loaded machine they can take more than the usual 300 s read timeout.
VERY_SLOW_TIMEOUT = 900
VERY_SLOW = {"prompt": "a slow request", "n": 64, "seed": 5}


def test_deadline_passed_in_queue_gets_503_unrun():
    s = Server("--max-batch", "64", "--max-images", "64", "--queue", "4", "--deadline", "1")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            running = ex.submit(s.post, "/generate", VERY_SLOW, timeout=VERY_SLOW_TIMEOUT)
            in_flight(s)
            before = s.metrics()["dalle_images_generated_total"]
            r = s.post("/generate", {"prompt": "too late", "n": 2, "seed": 1},
                       headers={"X-Request-Id": "too-late"})
            assert running.result().status_code == 200
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "timeout"
        m = s.metrics()
        assert m["dalle_images_generated_total"] == before + 64  # only the slow one ran
        assert m['dalle_request_failures_total{err="timeout"}'] == 1
        # the access line names the failure and the time it waited
        line = s.wait_log(r"\S+ access id=too-late .* status=503 error=timeout images=0 "
                          r"queue_ms=[0-9.]+ ms=[0-9.]+")
        assert float(re.search(r"queue_ms=([0-9.]+)", line).group(1)) >= 1000
    finally:
        assert s.stop() == 0


def post_raw(port, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return s


def test_disconnect_while_running_frees_slots(small):
    sock = post_raw(small.port, SLOW)
    in_flight(small)
    t0 = time.time()
    sock.close()
    small.wait_metric('dalle_request_failures_total{err="cancelled"}', lambda v: v == 1)
    small.wait_metric("dalle_requests_in_flight", lambda v: v == 0)
    cancel_s = time.time() - t0
    m = small.metrics()
    assert m["dalle_images_generated_total"] == 0
    # the state is free at once: a small request completes right away
    r = small.post("/generate", {"prompt": "after", "seed": 1})
    assert r.status_code == 200
    assert cancel_s < 30


def test_disconnect_while_queued_is_never_run(small):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        running = ex.submit(small.post, "/generate", SLOW)
        in_flight(small)
        sock = post_raw(small.port, {"prompt": "queued then gone", "n": 16, "seed": 1})
        small.wait_metric("dalle_queue_size", lambda v: v == 1)
        sock.close()
        assert running.result().status_code == 200
    small.wait_metric('dalle_request_failures_total{err="cancelled"}', lambda v: v == 1)
    small.wait_metric("dalle_queue_size", lambda v: v == 0)
    assert small.metrics()["dalle_images_generated_total"] == 16


def test_sigterm_drains_in_flight_and_fails_queued():
    s = Server("--max-batch", "16", "--queue", "4", "--drain", "120")
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        running = ex.submit(s.post, "/generate", SLOW)
        in_flight(s)
        queued = [ex.submit(s.post, "/generate", {"prompt": f"queued {i}", "seed": 1})
                  for i in range(2)]
        s.wait_metric("dalle_queue_size", lambda v: v == 2)
        s.proc.send_signal(signal.SIGTERM)
        s.wait_log(r"SIGTERM: draining \(up to 120 s\)")
        assert refused_soon(s.port), "a new connection was accepted during the drain"
        assert not running.done(), "the drain ended before a connection was tried"
        r = running.result()
        assert r.status_code == 200 and len(r.json()["images"]) == 16
        for f in queued:
            q = f.result()
            assert q.status_code == 503 and q.headers["Retry-After"] == "1"
            assert q.json()["error"]["code"] == "shutting_down"
    assert s.stop() == 0
    assert any(line.startswith("SIGTERM: draining") for line in s.log)
    assert s.log[-1] == "stopped"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=5).close()


def refused_soon(port, within=1):
    """True once a new TCP connection to port is refused (within seconds)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


def test_http_threads_do_not_use_epoll():
    """libmicrohttpd 0.9.75 in epoll mode aborts the process ("Failed to remove listen FD
    from epoll set") when MHD_quiesce_daemon races a busy HTTP thread, which a SIGTERM under
    traffic does now and then: every in-flight response is lost. The server runs MHD's poll
    mode instead, so the process holds no epoll instance."""
    s = Server("--http-threads", "4")
    fds = pathlib.Path(f"/proc/{s.proc.pid}/fd")
    links = [os.readlink(f) for f in fds.iterdir() if f.is_symlink()]
    assert any(link.startswith("socket:") for link in links), links
    assert not [link for link in links if "eventpoll" in link], links
    assert s.stop() == 0


def test_sigterm_past_drain_deadline_stops_running_job():
    s = Server("--max-batch", "16", "--queue", "4", "--drain", "0")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        running = ex.submit(s.post, "/generate", SLOW)
        in_flight(s)
        s.proc.send_signal(signal.SIGINT)
        r = running.result()
    assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
    assert s.stop() == 0
    assert any(line.startswith("SIGINT: draining") for line in s.log)


def test_ready_is_503_while_loading_then_200():
    s = Server(wait_ready=False)
    try:
        r = s.get("/ready")
        if r.status_code == 503:  # the tiny model may load before the first request
            assert r.json()["error"]["code"] == "loading" and r.headers["Retry-After"] == "1"
            g = s.post("/generate", {"prompt": "early"})
            assert g.status_code in (200, 503)
        s.wait_ready()
        assert s.get("/health").status_code == 200
    finally:
        assert s.stop() == 0


@pytest.fixture
def wide():
    s = Server("--max-batch", "16", "--queue", "8")
    yield s
    assert s.stop() == 0


def test_new_request_joins_running_batch_with_same_images(wide):
    small_body = {"prompt": "a small one", "n": 2, "seed": 3}
    big_body = {"prompt": "a big one", "n": 8, "seed": 4}
    small_solo = wide.post("/generate", small_body).json()
    big_solo = wide.post("/generate", big_body).json()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        big = ex.submit(wide.post, "/generate", big_body)
        in_flight(wide)
        small = ex.submit(wide.post, "/generate", small_body)
        # both decode in one batch: the small one did not wait for the big one to finish
        wide.wait_metric("dalle_batch_images", lambda v: v == 10)
        assert wide.metrics()["dalle_requests_in_flight"] == 2
        s, b = small.result().json(), big.result().json()
    assert s["images"] == small_solo["images"] and s["scores"] == small_solo["scores"]
    assert b["images"] == big_solo["images"]
    assert s["timings_ms"]["queue"] < b["timings_ms"]["total"]
    m = wide.metrics()
    assert m["dalle_batch_images"] == 0 and m["dalle_requests_in_flight"] == 0
    assert m['dalle_batch_size_bucket{le="8"}'] < m["dalle_batch_size_count"]  # steps of 10


def test_disconnect_frees_its_slots_while_others_run(wide):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        keep = ex.submit(wide.post, "/generate", {"prompt": "stays", "n": 8, "seed": 1})
        in_flight(wide)
        sock = post_raw(wide.port, {"prompt": "leaves", "n": 8, "seed": 2})
        wide.wait_metric("dalle_batch_images", lambda v: v == 16)
        sock.close()
        wide.wait_metric("dalle_batch_images", lambda v: v == 8)
        assert wide.metrics()["dalle_requests_in_flight"] == 1
        r = keep.result()
    assert r.status_code == 200 and len(r.json()["images"]) == 8
    m = wide.metrics()
    assert m['dalle_request_failures_total{err="cancelled"}'] == 1
    assert m["dalle_images_generated_total"] == 8 and m["dalle_batch_images"] == 0


def test_max_batch_1_serves_queued_requests_in_order():
    s = Server("--max-batch", "1", "--queue", "4")
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(s.post, "/generate", {"prompt": f"p{i}", "seed": i})
                    for i in range(4)]
            rs = [f.result() for f in futs]
        assert all(r.status_code == 200 for r in rs)
        assert s.metrics()["dalle_images_generated_total"] == 4
    finally:
        assert s.stop() == 0


def test_device_fault_fails_every_request_with_503_and_exits_3():
    """A fatal device fault: DALLE_FAULT_INJECT=step:N makes the backend report it from inside
    its N-th decode step, through the same handler a sticky CUDA error reaches. The running,
    queued and streaming requests all get 503 device_error (never a 200), /health stops
    answering 200, and the process exits 3 after sending the answers."""
    s = Server("--max-batch", "16", "--queue", "8", env={"DALLE_FAULT_INJECT": "step:200"})
    session = requests.Session()
    health, stop = [], threading.Event()

    def poll_health():
        while not stop.is_set():
            try:
                health.append(session.get(s.url("/health"), timeout=10).status_code)
            except requests.RequestException:
                health.append(None)
            time.sleep(0.005)

    def stream_events():
        r = requests.post(s.url("/generate"), stream=True, timeout=60,
                          data=json.dumps({"prompt": "streamed", "seed": 2, "stream": True}))
        return [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True)
                if line.startswith("data: ")]

    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        poller = ex.submit(poll_health)
        running = ex.submit(s.post, "/generate", SLOW)
        in_flight(s)
        queued = [ex.submit(s.post, "/generate", {"prompt": f"queued {i}", "seed": 1})
                  for i in range(2)]
        streamed = ex.submit(stream_events)
        s.wait_metric("dalle_queue_size", lambda v: v == 3)
        for f in [running, *queued]:
            r = f.result()
            assert r.status_code == 503 and r.headers["Content-Type"] == "application/json"
            assert r.json()["error"]["code"] == "device_error", r.text
        assert streamed.result()[-1]["error"]["code"] == "device_error"
        assert s.proc.wait(timeout=30) == 3
        stop.set()
        poller.result()
    assert health[0] == 200
    first_bad = next(i for i, h in enumerate(health) if h != 200)
    assert all(h != 200 for h in health[first_bad:]), health
    s.wait_log(r"device fault: cpu backend: injected fault at decode step 200 "
               r"\(DALLE_FAULT_INJECT\)")
    s.wait_log(r"stopped after a device fault \(exit 3\)")
    assert s.stop() == 3


def test_device_fault_answers_health_and_ready_503():
    """The fault handler marks the server unhealthy before it fails any request, so a client
    that got its 503 sees /health and /ready answer 503 on a kept-alive connection until the
    process is gone."""
    s = Server("--max-batch", "16", "--queue", "8", env={"DALLE_FAULT_INJECT": "step:30"})
    session = requests.Session()
    assert session.get(s.url("/ready")).status_code == 200
    r = s.post("/generate", SLOW)
    assert r.status_code == 503 and r.json()["error"]["code"] == "device_error"
    for path in ("/health", "/ready"):
        try:
            h = session.get(s.url(path), timeout=10)
        except requests.RequestException:
            continue  # already exited
        assert h.status_code == 503 and h.json()["error"]["code"] == "device_error"
    assert s.stop() == 3


def test_bad_fault_injection_setting_fails_the_load():
    s = Server(env={"DALLE_FAULT_INJECT": "step:x"}, wait_ready=False)
    assert s.proc.wait(timeout=60) == 1
    s.wait_log(r"dalle-server: cpu: DALLE_FAULT_INJECT must be step:N with N >= 1, got 'step:x'")
