"""Hostile input over both APIs and the admin endpoints, as raw HTTP/1.1 on a socket (so
header bytes can be anything): no 500, no configured secret in any answer or log line, the
server alive afterwards, and no ledger row for a request refused before a model call.

Bodies are valid requests with one field replaced by a wrong value (string, array, object,
negative, huge, NaN, deep nesting), arbitrary JSON, or arbitrary bytes; headers carry any of
the configured keys, garbage, or bytes that are not UTF-8.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.appkeys import STORE
from relay.logs import setup as setup_logs

from .spec import validate_error
from .support import ACME_KEY, ANTHROPIC_KEY, GLOBEX_KEY, UPSTREAM_KEY

ADMIN = "admin-key-hostile-0123456789"
METERED = "sk-metered-hostile-000"
SECRETS = [UPSTREAM_KEY, ANTHROPIC_KEY, ADMIN, ACME_KEY, GLOBEX_KEY, "sk-metered-hostile-000"]
MODELS = ["demo", "claude-text", "gpt-4.1-mini", "globex-chat", "nope", "broken-echo"]  # broken-echo quotes the key
RESPONSES_MODELS = MODELS + ["gpt-native"]  # the fake serves that one for /v1/responses only

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
RESPONSES = {"model": "demo", "input": "hi", "max_output_tokens": 20}
CHAT_FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "tools",
               "tool_choice", "parallel_tool_calls", "user", "reasoning_effort", "response_format", "stream_options",
               "logprobs", "top_logprobs", "seed", "metadata", "frequency_penalty", "presence_penalty", "store"]
RESPONSES_FIELDS = ["model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
                    "temperature", "top_p", "user", "service_tier", "reasoning", "text", "metadata", "store",
                    "truncation", "prompt_cache_key", "previous_response_id", "background", "conversation", "prompt"]

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=30), st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 2**63, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.sampled_from([[{"role": "tool", "tool_call_id": "x", "content": "y"}], [{"type": "function_call_output", "call_id": "c"}],
                     [{"type": "web_search" * 40}], {"effort": ["high"]}, {"format": {"type": "json_schema"}}]),
)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=15)


@st.composite
def bodies(draw: st.DrawFn, base: dict, fields: list[str], models: list[str]) -> bytes:
    kind = draw(st.sampled_from(["valid", "field", "field", "field", "field", "json", "bytes", "deep", "nan"]))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    body = {**base, "model": draw(st.sampled_from(models))}
    if kind == "deep":
        n = draw(st.integers(100, 1000))
        return json.dumps(body)[:-1].encode() + b', "' + draw(st.sampled_from(fields)).encode() + b'": ' + b"[" * n + b"]" * n + b"}"
    if kind == "nan":
        return json.dumps(body)[:-1].encode() + b', "temperature": NaN}'
    if kind == "field":
        body[draw(st.sampled_from(fields))] = draw(HOSTILE_VALUES)
    body.pop("stream", None)  # one answer per example
    return json.dumps(body).encode()


HEADER_VALUES = st.one_of(
    st.sampled_from([f"Bearer {ACME_KEY}", f"Bearer {GLOBEX_KEY}", f"Bearer {ADMIN}", f"Bearer {UPSTREAM_KEY}", "Bearer", "", "Basic x",
                     f"Bearer {ACME_KEY}{'A' * 9000}"]),  # over aiohttp's field limit: 431, nothing echoed
    st.binary(max_size=40).map(lambda b: b"Bearer " + b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=40).map(lambda t: "Bearer " + t.replace("\r", "").replace("\n", "")),
)


def _bytes(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, list[tuple[bytes, bytes]]]:
    target = draw(st.sampled_from(["chat", "responses", "responses", "chat", "admin"]))
    # Mostly a valid key, so bodies reach validation and beyond; sometimes anything at all.
    pick = draw(st.integers(0, 9))
    auth = (ADMIN if target == "admin" else ACME_KEY) if pick < 6 else GLOBEX_KEY if pick == 6 else METERED if pick == 7 else None
    headers = [(b"Authorization", f"Bearer {auth}".encode() if auth else _bytes(draw(HEADER_VALUES)))]
    if draw(st.booleans()):
        headers.append((draw(st.sampled_from([b"x-api-key", b"x-request-id", b"Content-Type", b"x-junk"])), _bytes(draw(HEADER_VALUES))))
    if target == "admin":
        path = draw(st.sampled_from(["/admin/channels", "/admin/usage", "/admin/reload"]))
        method = "POST" if path == "/admin/reload" else "GET"
        if path == "/admin/usage" and draw(st.booleans()):
            path += "?tenant=" + draw(st.text(alphabet="abc%&=;x'\"", max_size=8)) + "&since=" + draw(st.text(alphabet="0123-%x", max_size=8))
        return method, path, b"", headers
    if target == "chat":
        return "POST", "/v1/chat/completions", draw(bodies(CHAT, CHAT_FIELDS, MODELS)), headers
    return "POST", "/v1/responses", draw(bodies(RESPONSES, RESPONSES_FIELDS, RESPONSES_MODELS)), headers


async def exchange(host: str, port: int, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], rid: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: relay", f"x-request-id: {rid}".encode(), b"Connection: close",
                f"Content-Length: {len(body)}".encode()] + [k + b": " + v for k, v in headers if k.lower() != b"x-request-id"]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status = int(raw.split(b" ", 2)[1])
    return status, raw


@pytest.fixture
async def hostile_relay(make_relay, claude_relay):
    # claude_relay's config (every channel type, the Anthropic fake included), with an admin
    # key, a token-limited tenant and tpm on acme.
    config = claude_relay.config_text.replace('    models: ["globex-*"]\n', '    models: ["globex-*"]\n'
                                              f'  - name: metered\n    keys: [{METERED}]\n    limits: {{tpm: 5000, rpm: 100000}}\n')
    config = config.replace("server:\n", f"server:\n  admin_key: {ADMIN}\n  header_read_timeout: 5\n")
    assert METERED in config and ADMIN in config
    config = config.replace('keys: ["${ACME_KEY}"]', 'keys: ["${ACME_KEY}"]\n    limits: {tpm: 100000}')
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buf = io.StringIO()
    setup_logs("debug", stream=buf)
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG)
    relay = await make_relay(config)
    relay.log = buf
    yield relay
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


REFUSED = {400, 401, 404, 405, 408, 413, 431}


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=requests())
async def test_hostile_requests_get_clean_answers(hostile_relay, req):
    relay = hostile_relay
    method, path, body, headers = req
    rid = f"fuzz-{uuid.uuid4().hex}"
    listener = relay.ops if path.startswith("/admin/") else relay.server  # admin lives on the ops listener
    status, raw = await exchange(listener.host, listener.port, method, path, body, headers, rid)
    assert status < 500 or status in (502, 503), raw[:600]  # 502/503: upstream-named (checked below)
    for secret in SECRETS:
        assert secret.encode() not in raw, (secret, raw[:600])
    _, _, payload = raw.partition(b"\r\n\r\n")
    if status >= 400 and b"chunked" not in raw.split(b"\r\n\r\n", 1)[0].lower():
        err = json.loads(payload)
        if path == "/admin/reload" and status == 400 and "error" not in err:
            assert err["status"] == "rejected" and err["errors"], err  # the reload's own documented answer
        else:
            validate_error(err)  # every other refusal is an OpenAI error object
            assert status < 500 or err["error"]["code"].startswith(("upstream", "channels")), err
    rows = [r for r in relay.server.app[STORE].ledger if r.request_id == rid]
    background = status == 200 and b'"status":"queued"' in payload
    if background:  # its row comes when its run ends, with the run's own status
        for _ in range(500):
            if rows := [r for r in relay.server.app[STORE].ledger if r.request_id == rid]:
                break
            await asyncio.sleep(0.01)
        assert len(rows) == 1, rows
    elif status in REFUSED:
        # Refused at the edge (auth, body, routing, validation): no row. A 400 from an adaptor
        # building the upstream request comes after admission: its row charges nothing.
        assert status == 400 or rows == [], "a refused request left a ledger row"
        assert all((r.status, r.input_tokens, r.output_tokens, r.estimated) == (400, 0, 0, False) for r in rows), rows
    elif status == 200 and path.startswith("/v1/"):
        assert len(rows) == 1 and rows[0].status == 200
    # The server is alive after every example, and the log never saw a secret.
    out = relay.log.getvalue()
    for secret in SECRETS:
        assert secret not in out
