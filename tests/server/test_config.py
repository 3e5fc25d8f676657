"""Settings: --help, flags, DALLE_* env vars, the JSON file, precedence, and one clear line
with exit 2 for every bad setting."""
import json
import subprocess

import pytest

from conftest import BIN, MODEL, ROOT, Server

SETTINGS = ["model", "host", "port", "queue", "max-batch", "max-images", "threads", "http-threads",
            "body-limit", "max-prompt", "timeout", "deadline", "drain", "max-conns",
            "per-ip-conns", "api-key", "jpeg-threads", "device", "log-format"]


def run(*args, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120,
                          env=env or {})


def test_help_lists_every_setting_with_default():
    r = run("--help")
    assert r.returncode == 0
    for s in SETTINGS:
        assert f"--{s} " in r.stdout, s
        assert "DALLE_" + s.upper().replace("-", "_") in r.stdout, s
    assert "--config FILE" in r.stdout
    assert "default: 8080" in r.stdout and "default: 127.0.0.1" in r.stdout


@pytest.mark.parametrize("args,env,needle", [
    (["--port", "70000"], {}, "--port: '70000' is not an integer in [0, 65535]"),
    (["--port", "12x"], {}, "--port: '12x' is not an integer"),
    (["--queue", "0"], {}, "--queue: '0' is not an integer in [1, 100000]"),
    (["--max-batch", "-1"], {}, "--max-batch: '-1'"),
    (["--body-limit", "1"], {}, "--body-limit: '1'"),
    (["--bogus", "1"], {}, "--bogus: unknown option"),
    (["--port"], {}, "--port: needs a value"),
    (["--host", ""], {}, "--host: must not be empty"),
    ([], {"DALLE_PORT": "abc"}, "DALLE_PORT: 'abc' is not an integer"),
    ([], {"DALLE_DEADLINE": "0"}, "DALLE_DEADLINE: '0'"),
    (["--jpeg-threads", "0"], {}, "--jpeg-threads: '0' is not an integer in [1, 64]"),
    (["--jpeg-threads", "65"], {}, "--jpeg-threads: '65'"),
    (["--device", "gpu"], {}, "--device: 'gpu' is not auto, cpu, cuda or cuda:I,J,..."),
    (["--log-format", "JSON"], {}, "--log-format: 'JSON' is not text or json"),
    ([], {"DALLE_LOG_FORMAT": "logfmt"}, "--log-format: 'logfmt' is not text or json"),
    (["--device", "cuda:"], {}, "--device: 'cuda:' must be cuda:I,J,..."),
    (["--device", "cuda:0,0"], {}, "--device: 'cuda:0,0' must be cuda:I,J,..."),
    (["--device", "cuda:-1"], {}, "--device: 'cuda:-1' must be cuda:I,J,..."),
    (["--device", "cuda:0,x"], {}, "--device: 'cuda:0,x' must be cuda:I,J,..."),
    ([], {"DALLE_DEVICE": "CPU"}, "--device: 'CPU' is not auto, cpu, cuda"),
], ids=["port range", "port garbage", "queue 0", "max-batch negative", "body-limit small",
        "unknown flag", "missing value", "empty host", "env garbage", "env range",
        "jpeg-threads 0", "jpeg-threads 65", "device name", "log-format case",
        "log-format env", "device no ordinal",
        "device repeated", "device negative", "device garbage", "device env case"])
def test_bad_setting_exits_2(args, env, needle):
    r = run("--model", str(MODEL), *args, env=env)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.mark.parametrize("cwd", [ROOT, "/"])
def test_model_defaults_to_the_bundled_demo_model(cwd):
    # no --model: the checkout's models/demo, found from the binary whatever the working
    # directory (an installed binary and a binary without one: tests/cli/test_install.sh)
    p = subprocess.Popen([str(BIN), "--port", "0"], cwd=cwd, stderr=subprocess.PIPE, text=True,
                         env={})
    try:
        assert p.stderr.readline().startswith("listening on ")
        assert p.stderr.readline().startswith("ready: model demo-shapes on cpu")
    finally:
        p.terminate()
        assert p.wait(timeout=60) == 0


@pytest.mark.parametrize("content,needle", [
    ('{"port": 1, "port": 2}', "duplicate"),
    ('{"prot": 1}', "prot: unknown setting"),
    ('{"port": "80"}', "port: must be an integer"),
    ('{"model": 3}', "model: must be a string"),
    ("[1]", "must be a JSON object"),
    ("{", ""),
], ids=["duplicate key", "unknown key", "string for int", "int for string", "array", "broken"])
def test_bad_config_file(tmp_path, content, needle):
    f = tmp_path / "c.json"
    f.write_text(content)
    r = run("--model", str(MODEL), "--config", str(f))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and needle in r.stderr, r.stderr


def test_missing_config_file():
    r = run("--model", str(MODEL), "--config", "/nonexistent.json")
    assert r.returncode == 2 and "/nonexistent.json" in r.stderr


def test_bad_host_and_bad_model():
    r = run("--model", str(MODEL), "--host", "not-an-ip")
    assert r.returncode == 2 and "--host: 'not-an-ip' is not an IPv4 address" in r.stderr
    # a model directory without config.json fails before listening, with one line
    r = run("--model", "/nonexistent-model", "--port", "0")
    assert r.returncode == 2 and r.stderr == ("dalle-server: --model /nonexistent-model: not a model "
                                              "directory (config.json: No such file or directory)\n")
    r = run("--model", str(ROOT / "models"), "--port", "0")
    assert r.returncode == 2 and r.stderr.startswith("dalle-server: --model ") and \
        "not a model directory" in r.stderr and "listening" not in r.stderr


def gpus_visible():
    """Whether this machine has a CUDA device: `--device cuda` starts (or exits 2 if not)."""
    return "no CUDA device" not in run("--model", "/nonexistent-model", "--port", "0",
                                       "--device", "cuda").stderr


def test_device_cuda_without_gpu_exits_2_with_one_line():
    if gpus_visible():
        pytest.skip("this machine has a CUDA device")
    for dev in ("cuda", "cuda:0", "cuda:0,1"):
        r = run("--model", str(MODEL), "--port", "0", "--device", dev)
        assert r.returncode == 2, (dev, r.stderr)
        assert r.stderr == f"dalle-server: --device {dev}: no CUDA device is visible (use auto or cpu)\n"


def test_device_auto_falls_back_to_cpu_and_cpu_is_one_scheduler(tmp_path):
    if gpus_visible():
        pytest.skip("this machine has a CUDA device: auto takes it")
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"device": "cuda", "jpeg_threads": 1}))
    for args, env, device in ([], {}, "auto"), (["--config", str(f)], {"DALLE_DEVICE": "cpu"}, "cpu"):
        s = Server(*args, env=env)
        try:
            info = s.get("/info").json()
            assert info["device"] == device
            assert [d["name"] for d in info["devices"]] == ["cpu"]
            assert info["model"]["backend"] == "cpu"
            assert info["limits"]["jpeg_threads"] == (1 if args else 2)  # file / default
            s.wait_log(r"ready: model tiny-random on cpu, max batch 4, queue 16, jpeg threads [12]")
            assert s.post("/generate", {"prompt": "on the cpu", "seed": 1}).status_code == 200
        finally:
            assert s.stop() == 0


def test_precedence_file_env_flag(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"queue": 5, "max_images": 3, "max_prompt": 100, "deadline": 9}))
    s = Server("--config", str(f), "--max-prompt", "200", env={"DALLE_MAX_IMAGES": "2",
                                                               "DALLE_MAX_PROMPT": "150"})
    try:
        limits = s.get("/info").json()["limits"]
        assert limits["queue_capacity"] == 5      # file
        assert limits["deadline_s"] == 9          # file
        assert limits["max_images"] == 2          # env over file
        assert limits["max_prompt_bytes"] == 200  # flag over env
    finally:
        assert s.stop() == 0


def test_config_from_env_var_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"queue": 7}))
    s = Server(env={"DALLE_CONFIG": str(f)})
    try:
        assert s.get("/info").json()["limits"]["queue_capacity"] == 7
    finally:
        assert s.stop() == 0
