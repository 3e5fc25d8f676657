"""docker/Dockerfile, docker/Dockerfile.cpu, .dockerignore, docker/compose.yaml.

No container engine runs in CI and hadolint is not packaged for Debian, so the Dockerfiles
are checked here for the properties the deployment relies on (multi-stage build with the
Makefile, non-root runtime user, HEALTHCHECK on /health, 0.0.0.0 bind, /models mount point,
no weights baked in except models/demo) plus hadolint's usual rules (pinned base images,
--no-install-recommends, apt lists removed, exec-form ENTRYPOINT). The compose file goes
through `docker compose config` (or Debian's docker-compose) where one is installed.
"""
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from conftest import DOCKER, ROOT, SERVER_BIN

DOCKERFILES = ["Dockerfile", "Dockerfile.cpu"]


def instructions(path):
    """[(INSTRUCTION, args)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        cur += " " + s[:-1] if s.endswith("\\") else " " + s
        if not s.endswith("\\"):
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def stages(path):
    st = []
    for ins, args in instructions(path):
        if ins == "FROM":
            st.append({"from": args, "ins": []})
        elif st:
            st[-1]["ins"].append((ins, args))
    return st


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_properties(name):
    path = DOCKER / name
    st = stages(path)
    assert len(st) >= 2, "multi-stage: build, then runtime"
    build, final = st[0], st[-1]
    assert re.search(r"\bAS build\b", build["from"])
    assert "devel" in build["from"] or "bookworm" in build["from"]
    if name == "Dockerfile":
        assert "nvidia/cuda:" in build["from"] and "-devel-" in build["from"]
        assert "nvidia/cuda:" in final["from"] and "-runtime-" in final["from"], "cuBLAS ships in runtime"
    else:
        assert build["from"].startswith("debian:bookworm") and final["from"].startswith("debian:bookworm")
    runs = " ".join(a for i, a in build["ins"] if i == "RUN")
    assert re.search(r"\bmake\b", runs), "built with the Makefile"

    fins = final["ins"]
    users = [a for i, a in fins if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runtime user is not root"
    hc = [a for i, a in fins if i == "HEALTHCHECK"]
    assert len(hc) == 1 and "/health" in hc[0] and "CMD" in hc[0]
    env = " ".join(a for i, a in fins if i == "ENV")
    assert "DALLE_HOST=0.0.0.0" in env, "bind every interface inside the container"
    assert "DALLE_MODEL=/models" in env, "model directory is the /models mount point"
    assert ("DALLE_DEVICE=cuda" if name == "Dockerfile" else "DALLE_DEVICE=cpu") in env
    assert any(i == "EXPOSE" and "8080" in a for i, a in fins)
    ep = [a for i, a in fins if i == "ENTRYPOINT"]
    assert ep and ep[-1].startswith("["), "exec form, so SIGTERM reaches the server (drain)"

    # Only build outputs enter the final stage: no COPY from the build context there.
    for i, a in fins:
        if i in ("COPY", "ADD"):
            assert i == "COPY" and "--from=build" in a, f"final stage copies from the context: {a}"
    # The only weights are the demo model, copied by the build stage when present.
    text = path.read_text()
    assert re.findall(r"models/\w+", text.replace("models/demo", "")) == [], "no other model baked in"
    assert "models/demo" in runs
    assert "chmod -R a+rX /out/models" in runs, "the non-root user must read the demo model"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_oci_labels(name):
    """The runtime image carries the OCI annotations (title, description, version, revision,
    base image); the default version is the one of common/version.h."""
    final = stages(DOCKER / name)[-1]
    labels = " ".join(a for i, a in final["ins"] if i == "LABEL")
    keys = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', labels))
    assert set(keys) >= {f"org.opencontainers.image.{k}" for k in
                         ("title", "description", "version", "revision", "base.name")}, keys
    assert keys["org.opencontainers.image.title"] == "dalle-server"
    assert keys["org.opencontainers.image.version"] == "${VERSION}"
    args = dict(a.split("=", 1) for i, a in final["ins"] if i == "ARG" and "=" in a)
    version = re.search(r'#define DALLE_VERSION "([^"]+)"',
                        (ROOT / "common" / "version.h").read_text()).group(1)
    assert args["VERSION"] == version and args["REVISION"]
    # the base named in the label is the runtime stage's FROM
    base = keys["org.opencontainers.image.base.name"]
    assert final["from"].split()[0] == base
    for var in re.findall(r"\$\{(\w+)\}", base):  # re-declared in the stage, else empty
        assert any(i == "ARG" and a.split("=")[0] == var for i, a in final["ins"]), var


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_hadolint_style(name):
    for stage in stages(DOCKER / name):
        image = stage["from"].split()[0]
        assert ":" in image and not image.endswith(":latest"), f"DL3006/DL3007: pin {image}"
        for ins, args in stage["ins"]:
            if ins == "RUN" and "apt-get install" in args:
                assert "--no-install-recommends" in args, "DL3015"
                assert "-y" in args.split(), "DL3014"
                assert "rm -rf /var/lib/apt/lists" in args, "DL3009"
                assert "apt-get update" in args, "DL3009: update and install in one layer"
            if ins == "RUN":
                assert not re.search(r"\bsudo\b", args), "DL3004"
                assert not re.search(r"(^|&&|;)\s*cd ", args), "DL3003: use WORKDIR"
            assert ins != "MAINTAINER", "DL4000"
    assert [i for i, _ in instructions(DOCKER / name)].count("CMD") <= 1, "DL4003"


def test_dockerignore_keeps_weights_out():
    lines = [s.strip() for s in (ROOT / ".dockerignore").read_text().splitlines()
             if s.strip() and not s.startswith("#")]
    for must in (".git", "build", "build-*", "models/*", "!models/demo"):
        assert must in lines, f".dockerignore lacks {must}"
    assert lines.index("!models/demo") > lines.index("models/*"), "re-include after exclude"
    # the Makefile's build inputs stay in the context
    for need in ("Makefile", "include", "server", "web", "openapi.yaml", "model", "kernels", "docker"):
        assert need not in lines


def test_runtime_packages_script():
    """docker/runtime-packages.sh names the packages that own the binary's libraries (the
    runtime stages install exactly these); on this Debian machine the server's own libraries
    must be among them."""
    if not SERVER_BIN.exists():
        pytest.skip(f"{SERVER_BIN} not built")
    out = subprocess.run(["sh", str(DOCKER / "runtime-packages.sh"), str(SERVER_BIN)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pkgs = set(out.stdout.split())
    for lib in ("libmicrohttpd", "libjansson", "libturbojpeg", "libutf8proc", "libgomp"):
        assert any(p.startswith(lib) for p in pkgs), f"{lib} not found in {sorted(pkgs)}"


def compose_cmd():
    if shutil.which("docker"):
        r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if r.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_config(profile):
    cmd = compose_cmd()
    if cmd is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
    env["DALLE_REPLICAS"] = "3"
    r = subprocess.run(cmd + ["-f", str(DOCKER / "compose.yaml"), "--profile", profile, "config"],
                       capture_output=True, text=True, env=env, timeout=120)
    print(" ".join(cmd), "config:", r.returncode, r.stderr.strip())
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    svc = cfg["services"]
    srv, lb = svc[f"dalle-{profile}"], svc[f"nginx-{profile}"]
    assert int(srv["deploy"]["replicas"]) == 3
    devices = srv["deploy"].get("resources", {}).get("reservations", {}).get("devices")
    if profile == "gpu":
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    else:
        assert not devices
    assert srv["environment"]["DALLE_HOST"] == "0.0.0.0"
    assert srv["environment"]["DALLE_DEVICE"] == ("cuda" if profile == "gpu" else "cpu")
    assert "dalle" in srv["networks"]["default"]["aliases"]
    assert lb["environment"]["DALLE_BACKEND"] == "dalle:8080"
    (vol,) = lb["volumes"]
    assert vol["source"].endswith("docker/nginx.conf")
    assert vol["target"].startswith("/etc/nginx/templates/") and vol["target"].endswith(".template")
    assert not srv.get("ports"), "replicas are reached through nginx only"


def test_compose_file_shape():
    """The same checks without a compose tool: profiles, GPU reservation, nginx template."""
    cfg = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    s = cfg["services"]
    assert s["dalle-gpu"]["profiles"] == ["gpu"] and s["dalle-cpu"]["profiles"] == ["cpu"]
    dev = s["dalle-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and dev["capabilities"] == ["gpu"]
    assert "resources" not in s["dalle-cpu"]["deploy"]
    assert s["dalle-gpu"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert s["dalle-cpu"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    grace = s["dalle-gpu"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > int(s["dalle-gpu"]["environment"]["DALLE_DRAIN"])


def dockerignore_regexes():
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((neg, re.compile(rx.strip("/"))))
    return rules


def in_context(path, rules):
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    keep = True
    for neg, rx in rules:
        if any(rx.fullmatch("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            keep = neg
    return keep


def test_build_context_has_what_make_needs(tmp_path):
    """The files of a clean checkout that .dockerignore lets into the build context are enough
    for the Dockerfiles' `make … build/dalle-server` (make -n: every prerequisite exists),
    and no model but models/demo gets in."""
    r = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0 or shutil.which("make") is None:
        pytest.skip("needs a git checkout and make")
    files = r.stdout.split()
    rules = dockerignore_regexes()
    ctx = [f for f in files if in_context(f, rules)]
    assert "docker/runtime-packages.sh" in ctx and "Makefile" in ctx
    assert not [f for f in ctx if f.startswith("models/") and not f.startswith("models/demo/")]
    assert not [f for f in ctx if f.startswith(("build", ".git/", "tests/"))]
    for f in ctx:
        dst = tmp_path / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / f).is_file():
            shutil.copy2(ROOT / f, dst)
    r = subprocess.run(["make", "-n", "BUILD=build", "NVCC=", "build/dalle-server"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "-o build/dalle-server" in r.stdout
