"""Helpers shared by test modules: keys, configs, SSE readers, a metrics scraper, a clock.

Test modules import from here (and from spec, proc, fakes), never from each other or from
conftest, which only holds fixtures.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from ..proc import ROOT

ACME_KEY = "sk-acme-0123456789"
GLOBEX_KEY = "sk-globex-9876543210"
UPSTREAM_KEY = "sk-upstream-secret-DO-NOT-LEAK"
ANTHROPIC_KEY = "sk-ant-upstream-secret-DO-NOT-LEAK"


def responses_events(text: str) -> list[dict[str, Any]]:
    """Responses stream events, checked for the framing every event must have."""
    events = []
    for event, data in sse_frames(text):
        ev = json.loads(data)
        assert event == ev["type"], f"event line {event!r} does not name the payload type {ev['type']!r}"
        events.append(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence numbers must count from 0"
    return events


def sse_frames(text: str) -> list[tuple[str | None, str]]:
    """(event, data) per SSE frame; written independently of Relay's own decoder."""
    frames = []
    for block in text.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        frames.append((event, "\n".join(data)))
    return frames


BASE_CONFIG = """\
server:
  max_body_bytes: 65536
store:
  url: memory://
tenants:
  - name: acme
    keys: ["${ACME_KEY}"]
    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]
  - name: globex
    keys: ["%(globex)s"]
    models: ["globex-*"]
%(tenants)s
channels:
  - name: openai-main
    type: openai
    base_url: %(upstream)s/v1
    api_key: ${UPSTREAM_KEY}
    headers: {OpenAI-Organization: org-test}
    models:
      gpt-4.1-mini: text
      gpt-tools: tools
      gpt-tool: tool
      gpt-ns-tool: ns-tool
      gpt-reasoning: reasoning
      gpt-length: length
      gpt-midstream-error: error-midstream
      gpt-hang-midstream: hang-midstream
      gpt-truncated: truncated
      globex-chat: text
      broken-400: status-400
      broken-401: status-401
      broken-403: status-403
      broken-429: status-429
      broken-500: status-500
      broken-garbage: garbage
      broken-echo: echo-key
      slow-hang: hang-headers
    timeout: {connect: 2, first_byte: 1, idle: 1, total: 10}
  - name: nowhere
    type: openai
    base_url: http://127.0.0.1:9/v1
    models: [broken-unreachable]
  - name: demo
    type: mock
    models: [demo]
    stream_chunks: 4
  - name: openai-native
    type: openai
    base_url: %(upstream)s/v1
    api_key: ${UPSTREAM_KEY}
    responses: native
    models: {gpt-native: native-model, broken-native-429: status-429}
%(channels)s
"""


def base_config(upstream_url: str, extra_channels: str = "", extra_tenants: str = "") -> str:
    """The test config; extra YAML list items are given unindented."""
    return BASE_CONFIG % {
        "globex": GLOBEX_KEY,
        "upstream": upstream_url,
        "tenants": textwrap.indent(extra_tenants, "  "),
        "channels": textwrap.indent(extra_channels, "  "),
    }


ENV = {"ACME_KEY": ACME_KEY, "UPSTREAM_KEY": UPSTREAM_KEY}


async def scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/metrics", headers=headers) as r:
            assert r.status == 200
            text = await r.text()
    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


ADMIN = "admin-secret-123"


def failover_config(openai_url: str, anthropic_url: str, primary: str, *, cooldown="{failures: 5, seconds: 30}",
                    keepalive: float = 15, extra: str = "") -> str:
    """`fo` is served by a failing primary (priority 0) and a healthy backup (priority 1)."""
    primary_channel = (
        "  - name: primary\n    type: openai\n    base_url: http://127.0.0.1:9/v1\n    models: {fo: text}\n"
        if primary == "refuse" else
        f"  - name: primary\n    type: anthropic\n    base_url: {anthropic_url}\n    api_key: k\n    models: {{fo: {primary}}}\n"
        if primary.startswith("anthropic:") else
        f"  - name: primary\n    type: openai\n    base_url: {openai_url}/v1\n    models: {{fo: {primary}, flaky: {primary}}}\n"
    ).replace("anthropic:", "")
    return f"""\
server:
  admin_key: {ADMIN}
  sse_keepalive: {keepalive}
router:
  max_attempts: 3
  cooldown: {cooldown}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
{primary_channel}    timeout: {{connect: 1, first_byte: 0.5, idle: 0.5, total: 5}}
  - name: backup
    type: openai
    priority: 1
    base_url: {openai_url}/v1
    models: {{fo: text}}
{extra}"""



class Clock:
    """A clock that only moves when told: inject it where code takes `clock=`."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Relay:
    server: TestServer
    config_text: str
    ops: TestServer  # the operations listener: /metrics, /admin/*

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ops_url(self) -> str:
        return str(self.ops.make_url("")).rstrip("/")

    def client(self, key: str = ACME_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=30)

    async def post(self, path: str, body: Any, key: str | None = ACME_KEY, **headers: str) -> aiohttp.ClientResponse:
        h = {"content-type": "application/json", **headers}
        if key:
            h["authorization"] = f"Bearer {key}"
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with aiohttp.ClientSession() as s:
            resp = await s.post(self.url + path, data=data, headers=h)
            await resp.read()
            return resp

    async def post_json(self, path: str, body: Any, key: str | None = ACME_KEY) -> tuple[aiohttp.ClientResponse, Any]:
        """A non-streaming call: the response and its parsed JSON body."""
        resp = await self.post(path, body, key)
        return resp, json.loads(await resp.read())

    async def get_json(self, path: str, key: str = ACME_KEY) -> tuple[aiohttp.ClientResponse, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.get(self.url + path, headers={"authorization": f"Bearer {key}"}) as resp:
                return resp, json.loads(await resp.read())

    async def delete(self, path: str, key: str = ACME_KEY) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.delete(self.url + path, headers={"authorization": f"Bearer {key}"}) as resp:
                return resp.status, json.loads(await resp.read())

    async def raw_stream(self, path: str, body: Any, key: str = ACME_KEY) -> tuple[aiohttp.ClientResponse, str]:
        """A streamed answer exactly as sent, with its response (status, headers)."""
        async with aiohttp.ClientSession() as s:
            async with s.post(self.url + path, json=body, headers={"authorization": f"Bearer {key}"}) as resp:
                text = (await resp.read()).decode()
        return resp, text


async def serve_fake(fake: Any, aiohttp_server: Callable[..., Any]) -> Any:
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.url = str(fake.server.make_url("")).rstrip("/")
    return fake


class ManualSleep:
    """An injected sleep that the test lets through one at a time."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._pending: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        fut = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(fut)
        await fut

    async def tick(self) -> None:
        """Waits until the keeper sleeps, then ends that sleep."""
        (await self._pending.get()).set_result(None)

    async def sleeping(self) -> None:
        """Waits until the keeper sleeps again (whatever it did in between is done)."""
        fut = await self._pending.get()
        self._pending.put_nowait(fut)


def anthropic_channel(url: str) -> str:
    return f"""\
- name: claude
  type: anthropic
  base_url: {url}
  api_key: {ANTHROPIC_KEY}
  betas: [interleaved-thinking-2025-05-14]
  default_max_tokens: 1000
  models:
    claude-text: text
    claude-tool: tool_use
    claude-parallel: parallel_tool_use
    claude-thinking: thinking
    claude-max: max_tokens
    claude-midstream: error_midstream
    claude-400: status-400
    claude-401: status-401
    claude-403: status-403
    claude-404: status-404
    claude-413: status-413
    claude-429: status-429
    claude-500: status-500
    claude-529: status-529
    claude-hang: hang-headers
  timeout: {{connect: 2, first_byte: 1, idle: 1, total: 10}}
"""


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store_of(relay: Relay) -> Any:
    """The usage store of an in-process relay (limits, ledger)."""
    from relay.appkeys import STORE

    return relay.server.app[STORE]


def relay_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `relay` command, run as a user runs it (from the repository unless `cwd` says otherwise)."""
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)


async def respond(client: openai.AsyncOpenAI, stream: bool, **kw: Any) -> Any:
    """`client.responses.create(**kw)`, or the same request streamed: its final Response."""
    if not stream:
        return await client.responses.create(**kw)
    async with client.responses.stream(**kw) as s:
        return await s.get_final_response()
