"""docker/k8s/*.yaml: schema validation and the properties the deployment depends on.

Schema: every object is checked against the Kubernetes API types of Debian's
python3-kubernetes (OpenAPI-generated models): unknown fields, wrong types and missing
required fields fail. That package is the Kubernetes 1.22 API, which has no autoscaling/v2
models yet: the HPA is checked against autoscaling/v2beta2, whose fields are the same as
v2's for everything hpa.yaml uses. kubernetes-validate (PyPI, pinned in tests/requirements.txt,
installed into .venv-test by make deps) also checks them strictly against its newest schema.
"""
import re
import subprocess

import pytest
import yaml

from conftest import DOCKER, SERVER_BIN

kubernetes = pytest.importorskip("kubernetes", reason="python3-kubernetes (make deps) is missing")
from kubernetes import client as k8s  # noqa: E402

K8S = DOCKER / "k8s"
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2beta2HorizontalPodAutoscaler",
}
PRIMITIVE = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object,
             "datetime": str, "date": str}
# Quantities are strings in the models; the API also takes plain numbers (nvidia.com/gpu: 1).
QUANTITY_FIELDS = {"limits", "requests", "averageValue", "value", "capacity"}


def objects():
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def check_type(value, tname, where, errors, field=""):
    if tname.startswith("list["):
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list")
            return
        for i, v in enumerate(value):
            check_type(v, tname[5:-1], f"{where}[{i}]", errors, field)
    elif tname.startswith("dict("):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a map")
            return
        vt = tname[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            check_type(v, vt, f"{where}.{k}", errors, field)
    elif tname in PRIMITIVE:
        ok = isinstance(value, PRIMITIVE[tname])
        if tname == "str" and field in QUANTITY_FIELDS and isinstance(value, (int, float)):
            ok = True
        if tname in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append(f"{where}: expected {tname}, got {type(value).__name__} {value!r}")
    else:
        model = getattr(k8s, tname)
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a {tname} object")
            return
        by_json = {j: a for a, j in model.attribute_map.items()}
        for k, v in value.items():
            if k not in by_json:
                errors.append(f"{where}: unknown field {k!r} in {tname}")
                continue
            check_type(v, model.openapi_types[by_json[k]], f"{where}.{k}", errors, k)


@pytest.mark.parametrize("name,doc", objects(), ids=lambda x: x if isinstance(x, str) else "")
def test_schema(name, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in MODELS, f"{name}: no schema for {key}"
    errors = []
    check_type(doc, MODELS[key], f"{name}:{doc['kind']}", errors)
    assert not errors, "\n".join(errors)
    # the generated models raise on missing required fields
    k8s.ApiClient()._ApiClient__deserialize(doc, MODELS[key])


def test_schema_checker_catches_mistakes():
    errors = []
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "2", "selector": {}, "template": {"spec": {
               "containers": [{"name": "c", "image": "i", "livenessProbe": {"httpGet": {"path": "/h", "port": 1}, "periodSecond": 5}}]}}}}
    check_type(bad, "V1Deployment", "bad", errors)
    assert any("replicas: expected int" in e for e in errors), errors
    assert any("unknown field 'periodSecond'" in e for e in errors), errors
    with pytest.raises(ValueError):
        k8s.ApiClient()._ApiClient__deserialize(
            {"spec": {"selector": {}, "template": {"spec": {"containers": [{"image": "i"}]}}}},
            "V1Deployment")


def test_kubernetes_validate():
    """kubernetes-validate (PyPI, pinned in tests/requirements.txt, in .venv-test) checks every
    object strictly (unexpected properties rejected) against its newest bundled Kubernetes
    schema, and rejects a misspelt field."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (tests/requirements.txt) not installed")
    version = kv.latest_version()
    for name, doc in objects():
        kv.validate(doc, version, strict=True)
    print(f"kubernetes-validate {version} --strict: {len(objects())} objects passed")
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(Exception, match="portz"):
        kv.validate(bad, version, strict=True)


def by_kind():
    return {doc["kind"]: doc for _, doc in objects()}


def test_deployment_properties():
    objs = by_kind()
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in c["resources"].get("requests", {}), "GPUs are limits only"
    assert c["startupProbe"]["httpGet"]["path"] == "/ready"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    start = c["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 300, "model load may take minutes"
    # SIGTERM comes after preStop; the drain must fit in what is left of the grace period
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "sleep"
    drain = int(objs["ConfigMap"]["data"]["DALLE_DRAIN"])
    assert pod["terminationGracePeriodSeconds"] >= int(pre[1]) + drain + 5
    assert c["envFrom"][0]["configMapRef"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    port = c["ports"][0]
    assert port["containerPort"] == int(objs["ConfigMap"]["data"]["DALLE_PORT"])
    assert objs["ConfigMap"]["data"]["DALLE_HOST"] == "0.0.0.0"


def test_namespace_comes_first_and_holds_everything():
    """`kubectl apply -f docker/k8s/` takes the files in name order: the Namespace first,
    then every other object in it."""
    objs = objects()
    name, ns = objs[0]
    assert ns["kind"] == "Namespace", name
    for file, doc in objs[1:]:
        assert doc["kind"] != "Namespace", file
        assert doc["metadata"].get("namespace") == ns["metadata"]["name"], file


def test_pod_security_restricted():
    """The namespace enforces Pod Security "restricted", and the pod meets it (the profile's
    checks, https://kubernetes.io/docs/concepts/security/pod-security-standards/): non-root,
    seccomp RuntimeDefault or Localhost, no privilege escalation, every capability dropped
    (only NET_BIND_SERVICE may be added back), no host namespaces, ports or paths, no
    privileged container, only the allowed volume types."""
    objs = by_kind()
    labels = objs["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
    for v in pod.get("volumes", []):
        assert set(v) - {"name"} <= allowed_volumes, v
    containers = pod["containers"] + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), c["name"]
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, c["name"]
        assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, c["name"]
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
        assert not sc.get("privileged"), c["name"]
        assert all("hostPort" not in p for p in c.get("ports", [])), c["name"]


def test_selectors_and_targets_match():
    objs = by_kind()
    labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind, sel in (("Deployment", objs["Deployment"]["spec"]["selector"]["matchLabels"]),
                      ("PodDisruptionBudget", objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
                      ("Service", objs["Service"]["spec"]["selector"])):
        assert sel.items() <= labels.items(), f"{kind} selector does not match the pods"
    ref = objs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", objs["Deployment"]["metadata"]["name"])
    assert objs["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_hpa_scales_on_a_metric_the_server_exports():
    hpa = by_kind()["HorizontalPodAutoscaler"]
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert names == ["dalle_queue_size"]
    metrics_c = (DOCKER.parent / "server" / "metrics.c").read_text()
    assert "dalle_queue_size" in metrics_c
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    assert any(r["name"]["as"] == "dalle_queue_size" for r in adapter["rules"]["custom"])


def test_configmap_keys_are_server_settings():
    if not SERVER_BIN.exists():
        pytest.skip(f"{SERVER_BIN} not built")
    usage = subprocess.run([str(SERVER_BIN), "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"\[(DALLE_[A-Z_]+),", usage))
    assert known, usage
    data = by_kind()["ConfigMap"]["data"]
    assert set(data) <= known, f"not dalle-server settings: {set(data) - known}"


def test_alert_rules_use_exported_metrics():
    """docker/prometheus/alerts.yaml: valid rule-file shape, and every dalle_* series it reads
    is one that server/metrics.c exports (histograms as _bucket/_sum/_count)."""
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yaml").read_text())
    metrics_c = (DOCKER.parent / "server" / "metrics.c").read_text()
    exported = set(re.findall(r"\b(dalle_[a-z_]+)", metrics_c))
    names = set()
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert r["alert"] not in names
            names.add(r["alert"])
            assert re.fullmatch(r"\d+[smh]", r["for"]), r["for"]
            assert r["expr"].count("(") == r["expr"].count(")"), r["expr"]
            for m in re.findall(r"\b(dalle_[a-z_]+)", r["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", m)
                assert m in exported or base in exported, f"{r['alert']}: {m} is not exported"


def _promtool():
    import shutil
    p = shutil.which("promtool")
    if not p:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return p


def test_alert_rules_pass_promtool():
    r = subprocess.run([_promtool(), "check", "rules", str(DOCKER / "prometheus" / "alerts.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _bucket_series(route, per_min):
    """Cumulative dalle_request_duration_seconds buckets of one route on instance a:
    per_min maps an upper bound to the requests per minute that fall at or below it."""
    out = []
    for le in ("0.005", "120", "300", "+Inf"):
        n = sum(v for b, v in per_min.items() if le == "+Inf" or float(b) <= float(le))
        out.append({"series": f'dalle_request_duration_seconds_bucket{{instance="a",'
                              f'route="{route}",le="{le}"}}', "values": f"0+{n}x40"})
    return out


def test_p99_alert_targets_generation_routes(tmp_path):
    """promtool test rules: slow generations among a flood of fast health checks fire
    DalleSlowRequests (the p99 of all routes together would stay at milliseconds); slow
    health checks with fast generations do not."""
    promtool = _promtool()
    fast_gen_slow_health = (_bucket_series("/health", {"300": 1000})
                            + _bucket_series("/generate", {"0.005": 10}))
    slow_gen = (_bucket_series("/health", {"0.005": 1000})
                + _bucket_series("/v1/images/generations", {"300": 10}))
    tests = {"rule_files": [str(DOCKER / "prometheus" / "alerts.yaml")],
             "evaluation_interval": "1m",
             "tests": [
                 {"interval": "1m", "input_series": slow_gen,
                  "alert_rule_test": [{"eval_time": "30m", "alertname": "DalleSlowRequests",
                                       "exp_alerts": [{"exp_labels": {"severity": "warn",
                                                                      "instance": "a"},
                                                       "exp_annotations": {
                                                           "summary": "a: p99 generation "
                                                                      "request time above "
                                                                      "120 s"}}]}]},
                 {"interval": "1m", "input_series": fast_gen_slow_health,
                  "alert_rule_test": [{"eval_time": "30m", "alertname": "DalleSlowRequests",
                                       "exp_alerts": []}]},
             ]}
    f = tmp_path / "alerts_test.yaml"
    f.write_text(yaml.safe_dump(tests))
    r = subprocess.run([promtool, "test", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
