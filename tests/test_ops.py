"""The operations surface: /metrics and /admin/* off the public listener, the admin API when
disabled, /readyz against a real Redis that goes away, and the ledger rule for refusals."""
from __future__ import annotations

import json
import types

import aiohttp
import pytest

from relay.appkeys import STORE
from relay_adaptors.kernel.base import Call
from relay_adaptors.mock import adaptor as mock_adaptor
from relay_adaptors.mock.adaptor import MockAdaptor
from relay_config.schema import MockChannel

from .redis_server import RedisServer
from .spec import validate_error
from .support import ACME_KEY, base_config

ADMIN = "adm-ops-test"
HELLO = [{"role": "user", "content": "hi"}]


async def get(url: str, key: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=headers) as r:
            text = await r.text()
            return r.status, json.loads(text) if r.content_type == "application/json" else {"text": text}


def with_admin(config: str) -> str:
    return config.replace("server:\n", f"server:\n  admin_key: {ADMIN}\n")


async def test_ops_endpoints_are_not_on_the_public_listener(make_relay, fake_openai):
    relay = await make_relay(with_admin(base_config(fake_openai.url)))
    for path in ("/metrics", "/admin/channels", "/admin/usage"):
        status, body = await get(relay.url + path, ADMIN)
        assert status == 404, path
        validate_error(body)
        assert body["error"]["code"] == "not_found"
    status, body = await get(relay.ops_url + "/admin/channels", ADMIN)
    assert status == 200 and {c["name"] for c in body["channels"]} >= {"openai-main", "demo"}
    status, body = await get(relay.ops_url + "/metrics")
    assert status == 200 and "relay_build_info" in body["text"]
    async with aiohttp.ClientSession() as s:  # reload too is on the ops listener only
        async with s.post(relay.url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 404
    for url in (relay.url, relay.ops_url):  # the probes answer on both
        assert (await get(url + "/healthz"))[0] == 200 and (await get(url + "/readyz"))[0] == 200


async def test_ops_listen_null_keeps_them_on_the_public_listener(make_relay, fake_openai):
    relay = await make_relay(with_admin(base_config(fake_openai.url)).replace("server:\n", "server:\n  ops_listen: null\n"))
    assert (await get(relay.url + "/metrics"))[0] == 200
    assert (await get(relay.url + "/admin/channels", ADMIN))[0] == 200


async def test_without_admin_key_the_admin_api_is_disabled_and_says_how_to_enable_it(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    for path in ("/admin/channels", "/admin/usage"):
        status, body = await get(relay.ops_url + path, "anything")
        assert status == 404
        validate_error(body)
        assert body["error"]["code"] == "admin_api_disabled" and "server.admin_key" in body["error"]["message"]


async def test_admin_usage_since_is_validated(make_relay, fake_openai):
    relay = await make_relay(with_admin(base_config(fake_openai.url)))
    status, body = await get(relay.ops_url + "/admin/usage?since=yesterday", ADMIN)
    assert status == 400 and body["error"]["param"] == "since"
    validate_error(body)
    assert (await get(relay.ops_url + "/admin/usage?since=7d", ADMIN))[0] == 200


def redis_config(url: str, on_error: str) -> str:
    return f"""\
store: {{url: "{url}", on_error: {on_error}}}
tenants:
  - name: acme
    keys: [{ACME_KEY}]
channels:
  - name: demo
    type: mock
    models: [demo]
"""


@pytest.mark.parametrize("on_error", ["fail_closed", "fail_open"])
async def test_readyz_follows_a_real_redis_that_stops(make_relay, on_error):
    redis = RedisServer()
    try:
        relay = await make_relay(redis_config(redis.url, on_error))
        status, body = await get(relay.url + "/readyz")
        assert status == 200 and body["store"] == "ok" and body["config"] == "loaded"
    finally:
        redis.stop()
    status, body = await get(relay.url + "/readyz")
    assert (await get(relay.url + "/healthz"))[0] == 200  # liveness does not depend on the store
    if on_error == "fail_closed":
        assert status == 503 and body["status"] == "not ready" and body["reason"].startswith("store unreachable: redis store redis://127.0.0.1:")
    else:
        assert status == 200 and body["status"] == "ready" and "fail_open" in body["store"]


async def test_readyz_with_sqlite(make_relay, tmp_path):
    relay = await make_relay(redis_config(f"sqlite:///{tmp_path}/relay.db", "fail_closed"))
    assert (await get(relay.ops_url + "/readyz"))[1]["store"] == "ok"


async def test_ledger_rows_for_refusals(make_relay, fake_openai):
    """Refused by a limit: a row (status 429, no channel), so throttling shows in `relay usage`.
    A bad key or an unknown model is not a model call: no row."""
    config = base_config(fake_openai.url).replace(
        '    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]',
        '    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]\n    limits: {rpm: 1}')
    relay = await make_relay(config)
    body = {"model": "demo", "messages": HELLO}
    assert (await relay.post("/v1/chat/completions", body)).status == 200
    assert (await relay.post("/v1/chat/completions", body)).status == 429
    assert (await relay.post("/v1/chat/completions", body, key="sk-wrong")).status == 401
    assert (await relay.post("/v1/chat/completions", {**body, "model": "no-such-model"})).status == 404
    rows = [(r.tenant, r.model, r.channel, r.status) for r in relay.server.app[STORE].ledger]
    assert rows == [("acme", "demo", "demo", 200), ("acme", "demo", "", 429)]
    usage = await relay.server.app[STORE].usage("acme", None)
    assert [(u["model"], u["requests"], u["errors"]) for u in usage] == [("demo", 2, 1)]


async def test_mock_chunk_delay_paces_non_streaming_answers_like_streams(monkeypatch):
    """Documented: a non-streaming answer takes as long as its stream would
    (stream_chunks x chunk_delay), so load tests see the same generation time either way."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # an injected clock: records, never waits
        slept.append(seconds)

    monkeypatch.setattr(mock_adaptor, "asyncio", types.SimpleNamespace(sleep=sleep))
    mock = MockAdaptor(MockChannel(name="m", type="mock", models=["demo"], stream_chunks=8, chunk_delay=0.25))
    call = Call({"model": "demo", "messages": HELLO}, "demo", "req-1", {})
    answer = await mock.complete(call)
    assert slept == [8 * 0.25] and answer["choices"][0]["message"]["content"]
    slept.clear()
    stream = await mock.open_stream(call)
    async for _ in stream:
        pass
    assert slept == [0.25] * 8


async def test_relay_health_probes_the_port_its_config_names(make_relay, fake_openai, tmp_path):
    import asyncio
    import subprocess
    import sys

    from .proc import ROOT

    relay = await make_relay(base_config(fake_openai.url))
    port = relay.server.port
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(redis_config("memory://", "fail_closed").replace("store:", f"server: {{port: {port}}}\nstore:"))

    async def health() -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "relay", "health", "-c", str(cfg)],
                                       capture_output=True, text=True, cwd=ROOT, timeout=60)

    assert (await health()).returncode == 0
    await relay.server.close()
    down = await health()
    assert down.returncode == 1 and f"127.0.0.1:{port}" in down.stderr


def test_a_taken_ops_port_is_a_clear_error(tmp_path):
    import socket
    import subprocess
    import sys

    from .proc import free_port

    cfg = tmp_path / "relay.yaml"
    cfg.write_text(redis_config("memory://", "fail_closed"))
    with socket.socket() as busy:  # another program on the ops port (no SO_REUSEPORT)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "relay", "serve", "-c", str(cfg), "--port", str(free_port()),
                            "--ops-listen", f"127.0.0.1:{taken}"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and f"cannot listen on the operations address 127.0.0.1:{taken}" in r.stderr
    assert "Traceback" not in r.stderr


async def test_a_reload_cannot_move_the_ops_endpoints_onto_the_public_port(aiohttp_server, tmp_path):
    """Which listener serves /metrics and /admin/* is decided when the listeners are bound."""
    from relay.admin import reload_config
    from relay.app import create_app
    from relay_config.loader import load_config

    path = tmp_path / "relay.yaml"
    base = "store: {url: 'memory://'}\ntenants: [{name: t, keys: [k-123456789]}]\nchannels: [{name: c, type: mock, models: [m]}]\n"
    path.write_text("server: {admin_key: adm-123456789}\n" + base)
    app = create_app(load_config(path), path)
    server = await aiohttp_server(app, host="127.0.0.1")
    path.write_text("server: {admin_key: adm-123456789, ops_listen: null}\n" + base)
    ok, errors = reload_config(app)
    assert ok, errors
    async with aiohttp.ClientSession() as s:
        for url in ("/metrics", "/admin/channels"):
            async with s.get(str(server.make_url(url)), headers={"Authorization": "Bearer adm-123456789"}) as r:
                assert r.status == 404, url  # still only on the ops listener
