"""Metrics after known traffic, the dashboard and alerts against a real scrape, JSON logs.
(The deploy files are checked in test_deploy.py.)"""
from __future__ import annotations

import json
import re

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

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
    m = await scrape(relay.ops_url)
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
        async with s.get(relay.ops_url + "/metrics") as r:
            assert r.status == 401
    assert await scrape(relay.ops_url, "scrape-me")


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
        async with s.get(relay.ops_url + "/metrics") as r:
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
