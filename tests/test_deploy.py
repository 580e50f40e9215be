"""The deployment files, checked against the real CLI parser and config loader.

Always: static rules for the Dockerfile and .dockerignore, the compose stack parsed and
cross-checked (services, ports, volumes, Grafana provisioning), the kustomize base and its
components rendered (by `kubectl kustomize` when installed) and cross-checked.
With a Docker engine: the image is built and run. Without one the test says why it skipped.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.cli import build_parser
from relay.handlers import READY_STORE_TIMEOUT
from relay_config.loader import parse_config
from relay_config.schema import RelayConfig, split_host_port

from .proc import ROOT, free_port

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"


def cli(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def ports_of(config: RelayConfig) -> tuple[int, int]:
    assert config.server.ops_listen is not None, "deployments keep /metrics and /admin off the public port"
    return config.server.port, split_host_port(config.server.ops_listen)[1]


# --- Dockerfile -------------------------------------------------------------------------

def dockerfile_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip()
            stages[current] = [("FROM", rest)]
        elif current:
            stages[current].append((op.upper(), rest.strip()))
    return stages


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, rest in stage:
        if op == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def image_config(stages: dict[str, list[tuple[str, str]]]) -> tuple[RelayConfig, str]:
    """The config the image serves by default: the file copied to the CMD's path, read with
    the image's ENV."""
    base = stages["base"]
    path = cli(json.loads(dict(base)["CMD"])).config
    source = next(r.split()[0] for op, r in base if op == "COPY" and r.split()[-1] == path)
    return parse_config((ROOT / source).read_text(), source, env=env_of(base)), path


def test_dockerfile_rules():
    stages = dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    assert list(stages) == ["build", "base", "cli", "runtime"]  # the last one is the default target
    build = stages["build"]
    # Layer order: only package metadata is copied before the dependency install, so a code
    # change leaves that layer cached; the code is installed afterwards without dependencies.
    ops = [(op, rest) for op, rest in build if op in ("COPY", "RUN")]
    deps = next(i for i, (op, rest) in enumerate(ops) if op == "RUN" and "-r requirements.txt" in rest)
    copied_before = [rest.split()[:-1] for op, rest in ops[:deps] if op == "COPY"]
    assert copied_before == [["pyproject.toml"]]
    code = [i for i, (op, rest) in enumerate(ops) if op == "COPY" and rest.split()[0] in ("relay", "adaptors", "config")]
    assert len(code) == 3 and min(code) > deps
    assert any(op == "RUN" and "--no-deps ." in rest for op, rest in ops[max(code):])
    base = dict(stages["base"])
    assert json.loads(base["ENTRYPOINT"]) == ["relay"]
    serve = cli(json.loads(base["CMD"]))
    assert serve.command == "serve" and serve.port is None and serve.host is None  # the config decides
    # HEALTHCHECK: `relay health` on the very file `serve` reads, so it probes the served port.
    health = base["HEALTHCHECK"].split(" CMD ", 1)[1]
    assert json.loads(health)[0] == "relay"
    probe = cli(json.loads(health)[1:])
    assert probe.command == "health" and probe.config == serve.config and probe.url is None
    config, _ = image_config(stages)
    assert config.server.host == "0.0.0.0"
    assert sorted(int(p) for p in base["EXPOSE"].split()) == sorted(ports_of(config))
    for final in ("runtime", "cli"):  # non-root
        users = [v for op, v in stages[final] if op == "USER"]
        assert users and users[-1] == "relay"
    runs = " ".join(v for op, v in stages["base"] if op == "RUN")
    assert "useradd" in runs and "--uid 10001" in runs
    assert "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" in dict(stages["cli"])["RUN"]


def dockerignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pat) or (pat.startswith("**/") and fnmatch.fnmatchcase(c.split("/")[-1], pat[3:]))
               for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small_and_complete():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    for junk in (".venv/bin/python", "relay.db", "relay.db-wal", ".git/HEAD", ".tools/node_modules/x", "tests/test_ops.py",
                 "relay/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", "relay_gateway.egg-info/PKG-INFO"):
        assert dockerignored(patterns, junk), junk
    # Everything the Dockerfile copies from the context is in it.
    stages = dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    sources = [src for stage in stages.values() for op, rest in stage
               if op == "COPY" and not rest.startswith("--from") for src in rest.split()[:-1]]
    assert sources
    for src in sources:
        files = [p for p in (ROOT / src).rglob("*.py")] if (ROOT / src).is_dir() else [ROOT / src]
        assert files, src
        for f in files:
            rel = str(f.relative_to(ROOT))
            if "__pycache__" not in rel:
                assert not dockerignored(patterns, rel), rel


def docker_engine() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return "no Docker engine: `docker info` says: " + (r.stderr.strip().splitlines() or ["(nothing)"])[-1]
    return None


def test_image_builds_and_serves():
    why = docker_engine()
    if why:
        pytest.skip(why + " (test_dockerfile_rules and test_dockerignore_* checked the files statically)")
    tag = "relay-test:local"
    subprocess.run(["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)], check=True, timeout=1200)
    port = free_port()
    cid = subprocess.run(["docker", "run", "-d", "-p", f"127.0.0.1:{port}:8080", tag], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        health = ""
        while time.monotonic() < deadline:
            health = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", cid], capture_output=True,
                                    text=True, timeout=30).stdout.strip()
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy"
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                                     data=json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).encode(),
                                     headers={"Authorization": "Bearer sk-demo", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["choices"]
        uid = subprocess.run(["docker", "exec", cid, "id", "-u"], capture_output=True, text=True, timeout=30).stdout.strip()
        assert uid == "10001"
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


# --- docker compose ---------------------------------------------------------------------

def compose_default(value: str) -> str:
    """`${VAR:-default}` as compose resolves it with VAR unset."""
    return value.split(":-", 1)[1].rstrip("}") if value.startswith("${") and ":-" in value else value


def test_compose_stack_is_consistent():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"relay", "redis", "prometheus", "grafana"}
    for name, svc in services.items():  # every dependency is a service; every named volume declared
        deps = svc.get("depends_on", [])
        assert set(deps) <= set(services), name
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
    relay = services["relay"]
    assert relay["build"]["context"] == ".." and (DEPLOY / ".." / relay["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert relay["build"]["target"] in dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    assert relay["image"].startswith("${RELAY_IMAGE:-")  # the image name, in one place
    args = cli(relay["command"])
    assert args.command == "serve" and args.port is None
    mounts = {v.split(":")[1]: v.split(":")[0] for v in relay["volumes"]}
    env = {k: compose_default(v) for k, v in relay["environment"].items()}
    config = parse_config((DEPLOY / mounts[args.config]).read_text(), "relay.compose.yaml", env=env)
    port, ops = ports_of(config)
    assert config.server.host == "0.0.0.0" and split_host_port(config.server.ops_listen or "")[0] == "0.0.0.0"
    published = {p.rsplit(":", 1)[1]: p.rsplit(":", 1)[0] for p in relay["ports"]}
    assert published[str(port)] == str(port)
    assert published[str(ops)].startswith("127.0.0.1:")  # /metrics and /admin: the host's loopback only
    assert config.store.url.startswith("redis://redis:6379")
    assert relay["depends_on"]["redis"]["condition"] == "service_healthy" and services["redis"]["healthcheck"]
    assert int(relay["stop_grace_period"].rstrip("s")) > config.server.drain_seconds
    # Prometheus scrapes the ops listener, with the rules it is given.
    prom_dir = next(v.split(":")[0] for v in services["prometheus"]["volumes"] if v.split(":")[1] == "/etc/prometheus")
    prom = yaml.safe_load((DEPLOY / prom_dir / "prometheus.yml").read_text())
    job = prom["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == [f"relay:{ops}"] and job["metrics_path"] == "/metrics"
    assert all((DEPLOY / prom_dir / rule).exists() for rule in prom["rule_files"])
    # Grafana: the provisioned datasource is this Prometheus; the provider's folder holds the
    # dashboard, whose panels use that datasource; it is the home dashboard.
    grafana = services["grafana"]
    gmounts = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in grafana["volumes"]}
    provisioning = gmounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prom_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert sources[0]["url"] == f"http://prometheus:{prom_port}"
    provider = yaml.safe_load((provisioning / "dashboards" / "relay.yml").read_text())["providers"][0]
    dashboards = [c for c in gmounts if c.startswith(provider["options"]["path"].rstrip("/") + "/")]
    assert dashboards and grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in dashboards
    dashboard = json.loads(gmounts[dashboards[0]].read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {sources[0]["uid"]}


# --- Kubernetes (kustomize) -------------------------------------------------------------

def kustomization(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return data


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render_by_hand(folder: Path, components: list[str] | None = None) -> list[dict[str, Any]]:
    """What kustomize would emit for these files (resources, components, the images entry;
    patches are checked to exist and target real objects, then applied as env merges)."""
    k = kustomization(folder)
    docs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        docs += render_by_hand(folder / res) if (folder / res).is_dir() else yaml_docs(folder / res)
    for comp in (k.get("components", []) if components is None else components):
        ck = kustomization(folder / comp)
        assert ck["kind"] == "Component"
        for res in ck.get("resources", []):
            docs += yaml_docs(folder / comp / res)
        for patch in ck.get("patches", []):
            target = next(d for d in docs if d["kind"] == patch["target"]["kind"] and d["metadata"]["name"] == patch["target"]["name"])
            for want in yaml_docs(folder / comp / patch["path"])[0]["spec"]["template"]["spec"]["containers"]:
                have = next(c for c in target["spec"]["template"]["spec"]["containers"] if c["name"] == want["name"])
                have.setdefault("env", []).extend(want.get("env", []))
    for image in k.get("images", []):
        for d in docs:
            for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"] == image["name"]:
                    c["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def rendered(folder: Path, components: list[str] | None, tmp_path: Path) -> list[dict[str, Any]]:
    by_hand = render_by_hand(folder, components)
    if shutil.which("kubectl"):
        target = folder
        if components is not None:  # a throwaway overlay naming the components to add
            tmp_path.mkdir(parents=True, exist_ok=True)
            (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
                {"resources": [os.path.relpath(folder / "base", tmp_path)],
                 "components": [os.path.relpath(folder / c, tmp_path) for c in components],
                 "images": kustomization(folder).get("images", [])}))
            target = tmp_path
        out = subprocess.run(["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", str(target)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        assert sorted(map(key, docs)) == sorted(map(key, by_hand))  # the hand rendering agrees with kustomize
        return docs
    return by_hand


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def relay_pod(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], RelayConfig]:
    pod = find(docs, "Deployment", "relay")["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "relay")
    args = cli(c["args"])
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert Path(args.config).parent == Path(mount["mountPath"])
    config_map = find(docs, "ConfigMap", next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"])
    secret = yaml_docs(K8S / "secret.example.yaml")[0]
    assert {s["secretRef"]["name"] for s in c["envFrom"]} == {secret["metadata"]["name"]}
    env = {**secret["stringData"], **{e["name"]: e["value"] for e in c.get("env", [])}}
    config = parse_config(config_map["data"][Path(args.config).name], "configmap", env=env)
    return pod, c, config


def test_kustomize_base_and_components_are_consistent(tmp_path):
    assert kustomization(K8S / "base")["kind"] == "Kustomization"
    for comp in ("components/redis", "components/servicemonitor"):
        assert kustomization(K8S / comp)["kind"] == "Component"
    base = rendered(K8S / "base", None, tmp_path / "base")
    assert {d["kind"] for d in base} == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert "ServiceMonitor" not in {d["kind"] for d in base}  # needs the Prometheus Operator: a component
    pod, c, config = relay_pod(base)
    port, ops = ports_of(config)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": port, "ops": ops} and config.server.host == "0.0.0.0"
    assert split_host_port(config.server.ops_listen or "")[0] == "0.0.0.0"  # reachable by an in-cluster Prometheus
    ready, live = c["readinessProbe"], c["livenessProbe"]
    assert ready["httpGet"] == {"path": "/readyz", "port": "http"} and live["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ready["timeoutSeconds"] > READY_STORE_TIMEOUT
    annotations = find(base, "Deployment", "relay")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ops) and annotations["prometheus.io/path"] == "/metrics"
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + config.server.drain_seconds
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    public = find(base, "Service", "relay")["spec"]["ports"]
    assert [p["targetPort"] for p in public] == ["http"]  # the ops port is not on the public Service
    assert c["image"] == "relay"  # the placeholder the overlay's images: entry names

    # The shipped overlay: base + Redis, the image set in one place.
    shipped = rendered(K8S, None, tmp_path / "shipped")
    image = kustomization(K8S)["images"][0]
    _, c, config = relay_pod(shipped)
    assert c["image"] == f"{image['newName']}:{image['newTag']}"
    redis_svc = find(shipped, "Service", "relay-redis")
    redis_pods = find(shipped, "Deployment", "relay-redis")
    assert config.store.url == f"redis://{redis_svc['metadata']['name']}:{redis_svc['spec']['ports'][0]['port']}/0"
    assert redis_svc["spec"]["selector"] == redis_pods["spec"]["selector"]["matchLabels"]
    redis_ports = {p["name"] for p in redis_pods["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert redis_svc["spec"]["ports"][0]["targetPort"] in redis_ports

    # The ServiceMonitor component scrapes the ops port through a Service of its own.
    monitored = rendered(K8S, ["components/redis", "components/servicemonitor"], tmp_path / "monitored")
    sm = find(monitored, "ServiceMonitor")
    ops_svc = next(d for d in monitored if d["kind"] == "Service"
                   and sm["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items())
    endpoint = sm["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    svc_port = next(p for p in ops_svc["spec"]["ports"] if p["name"] == endpoint["port"])
    _, c, _ = relay_pod(monitored)
    assert svc_port["targetPort"] == "ops" and "ops" in {p["name"] for p in c["ports"]}
    assert sum(1 for d in monitored if d["kind"] == "Service" and sm["spec"]["selector"]["matchLabels"].items()
               <= d["metadata"]["labels"].items()) == 1  # the public Service is not scraped


def test_promtool_accepts_the_prometheus_files():
    assert shutil.which("promtool"), "promtool is missing; `make test` installs it (Debian package prometheus)"
    for args in (["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")]):
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
