"""Metrics after known traffic, the deploy files against the real CLI, config and scrape."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from relay.app import create_app
from relay.cli import build_parser
from relay_config.loader import parse_config

from .proc import ROOT, RelayProcess
from .support import ACME_KEY, GLOBEX_KEY, failover_config, scrape, value

DEPLOY = ROOT / "deploy"
HELLO = [{"role": "user", "content": "hi"}]


async def test_metrics_after_known_traffic(make_relay, fake_openai, fake_anthropic):
    config = failover_config(fake_openai.url, fake_anthropic.url, "status-500").replace(
        "    keys: [\"" + ACME_KEY + "\"]", "    keys: [\"" + ACME_KEY + "\"]\n    limits: {rpm: 5}\n    models: [fo, flaky]")
    relay = await make_relay(config)
    for _ in range(3):
        await relay.post("/v1/chat/completions", {"model": "fo", "messages": HELLO})  # primary 500 -> backup
    async with aiohttp.ClientSession() as s:
        async with s.post(relay.url + "/v1/chat/completions", json={"model": "fo", "messages": HELLO, "stream": True},
                          headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
            await r.read()
    await relay.post("/v1/chat/completions", {"model": "flaky", "messages": HELLO})  # 500 everywhere (one channel)
    limited = await relay.post("/v1/chat/completions", {"model": "fo", "messages": HELLO})  # the 6th: over rpm 5
    assert limited.status == 429
    m = await scrape(relay.url)
    assert value(m, "relay_requests_total", tenant="acme", model="fo", channel="backup", api="chat", status="200") == 4
    assert value(m, "relay_requests_total", tenant="acme", model="flaky", channel="primary", api="chat", status="500") == 1
    assert value(m, "relay_tokens_total", tenant="acme", model="fo", channel="backup", kind="input") == 4 * 19
    assert value(m, "relay_tokens_total", tenant="acme", model="fo", channel="backup", kind="output") == 4 * 17
    assert value(m, "relay_request_duration_seconds_count", tenant="acme", model="fo", channel="backup", api="chat") == 4
    assert value(m, "relay_time_to_first_token_seconds_count", model="fo", channel="backup", api="chat") == 1
    assert value(m, "relay_failovers_total", model="fo", from_channel="primary") == 4
    assert value(m, "relay_upstream_errors_total", channel="primary", reason="server_error") == 5
    assert value(m, "relay_upstream_duration_seconds_count", channel="primary") == 5
    assert value(m, "relay_upstream_duration_seconds_count", channel="backup") == 4
    assert value(m, "relay_rate_limited_total", tenant="acme", limit="requests") == 1
    assert value(m, "relay_inflight_requests", channel="backup") == 0
    assert value(m, "relay_channel_up", channel="primary") == 0 and value(m, "relay_channel_up", channel="backup") == 1
    assert value(m, "relay_build_info", version="0.1.0") == 1


async def test_metrics_token_guards_the_scrape(make_relay, fake_openai):
    from .support import base_config

    relay = await make_relay(base_config(fake_openai.url).replace("server:\n", "server:\n  metrics_token: scrape-me\n"))
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.url + "/metrics") as r:
            assert r.status == 401
    assert await scrape(relay.url, "scrape-me")


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(relay_[a-z_]+)\b", expr))


def scraped_names(text: str) -> set[str]:
    names = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        if fam.type == "histogram":
            names.update(fam.name + sfx for sfx in ("_bucket", "_sum", "_count"))
    return names


async def test_dashboard_and_alerts_use_real_metric_names(make_relay, fake_openai):
    from .support import base_config

    relay = await make_relay(base_config(fake_openai.url))
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.url + "/metrics") as r:
            real = scraped_names(await r.text())
    dashboard = json.loads((DEPLOY / "grafana" / "relay-dashboard.json").read_text())
    used = {n for p in dashboard["panels"] for t in p["targets"] for n in metric_names_in(t["expr"])}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used_alerts = {n for g in rules["groups"] for rule in g["rules"] for n in metric_names_in(rule["expr"])}
    assert used and used_alerts
    assert used - real == set() and used_alerts - real == set()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in ("status", "p50", "p99", "first token", "tokens", "channel up", "failover", "rate-limited"):
        assert needed in titles


def test_promtool_accepts_the_prometheus_files():
    assert shutil.which("promtool"), "promtool is missing; `make test` installs it (Debian package prometheus)"
    for args in (["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")]):
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def serve_args(argv: list[str]):
    args = build_parser().parse_args(argv)
    assert args.command == "serve"
    return args


def test_compose_matches_the_cli_and_config():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert {"relay", "redis", "prometheus", "grafana"} <= set(compose["services"])
    relay = compose["services"]["relay"]
    args = serve_args(relay["command"])
    mounts = dict(v.split(":")[:2] for v in relay["volumes"])  # host path -> container path
    host_config = next(h for h, c in mounts.items() if c == args.config)
    config = parse_config((DEPLOY / host_config).read_text(), env={})
    assert config.store.url.startswith("redis://redis:")
    assert relay["ports"] == [f"{args.port}:{args.port}"] and config.server.port == args.port
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [f"relay:{args.port}"]
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
    assert int(relay["stop_grace_period"].rstrip("s")) > config.server.drain_seconds
    grafana = compose["services"]["grafana"]["volumes"]
    assert any(v.startswith("./grafana/relay-dashboard.json:") for v in grafana)


def test_kubernetes_manifests_match_the_cli_and_config():
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = serve_args(c["args"])
    assert c["ports"][0]["containerPort"] == args.port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert Path(args.config).parent == Path(mount["mountPath"]) and Path(args.config).name in docs["ConfigMap"]["data"]
    config = parse_config(docs["ConfigMap"]["data"]["config.yaml"], env={k: "x" for k in docs["Secret"]["stringData"]})
    assert config.server.port == args.port
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + config.server.drain_seconds
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
    assert docs["ServiceMonitor"]["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}
    app = create_app(config)
    paths = {r.resource.canonical for r in app.router.routes()}
    assert {"/readyz", "/healthz", "/metrics"} <= paths


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
            stages[current].append((op.upper(), rest))
    return stages


def test_dockerfile_statically():
    stages = dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    assert list(stages) == ["build", "base", "cli", "runtime"]  # the last one is the default target
    base = dict(stages["base"])
    assert json.loads(base["ENTRYPOINT"]) == ["relay"]
    args = serve_args(json.loads(base["CMD"]))
    assert args.config == "/etc/relay/config.yaml" and base["EXPOSE"] == str(args.port)
    assert "/healthz" in base["HEALTHCHECK"] and f":{args.port}/" in base["HEALTHCHECK"]
    for final in ("runtime", "cli"):
        users = [v for op, v in stages[final] if op == "USER"]
        assert users and users[-1] == "relay"
    runs = " ".join(v for op, v in stages["base"] if op == "RUN")
    assert "useradd" in runs and "--uid 10001" in runs
    assert "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" in dict(stages["cli"])["RUN"]


async def test_logs_are_json_lines_without_keys_or_prompts(tmp_path):
    secret_prompt = "my-very-private-prompt-4711"
    path = tmp_path / "relay.yaml"
    path.write_text(f"""\
store: {{url: memory://}}
tenants:
  - name: acme
    keys: [{ACME_KEY}]
channels:
  - name: demo
    type: mock
    models: [demo]
""")
    relay = RelayProcess(path)
    try:
        async with aiohttp.ClientSession() as s:
            for key, body in [(ACME_KEY, {"model": "demo", "messages": [{"role": "user", "content": secret_prompt}]}),
                              (ACME_KEY, {"model": "demo", "stream": True, "messages": [{"role": "user", "content": secret_prompt}]}),
                              (GLOBEX_KEY, {"model": "demo", "messages": []}),
                              (ACME_KEY, {"model": "nope", "messages": [{"role": "user", "content": secret_prompt}]})]:
                async with s.post(relay.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                    await r.read()
    finally:
        relay.stop()
    log = relay.log
    assert ACME_KEY not in log and GLOBEX_KEY not in log and secret_prompt not in log and "Mock answer" not in log
    lines = [json.loads(line) for line in log.splitlines()]
    requests = [line for line in lines if line["msg"] == "request"]
    model_calls = [line for line in requests if "tenant" in line]
    assert [(r["tenant"], r["model"], r["stream"], r["status"]) for r in model_calls] == [("acme", "demo", False, 200), ("acme", "demo", True, 200)]
    for r in model_calls:
        assert {"time", "request_id", "channel", "api", "duration_ms", "ttft_ms", "input_tokens", "output_tokens", "attempts", "client"} <= set(r)
    assert sorted(r["status"] for r in requests if "tenant" not in r) == [401, 404]
    assert any("listening on" in line["msg"] for line in lines)
