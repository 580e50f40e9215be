"""Secrets never leave (errors, stream frames, logs), redirects are not followed, hostile
protocol inputs are 400s naming their param, and a tenant cannot probe for other models."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import aiohttp
import pytest
from aiohttp import web

from relay.appkeys import STORE
from relay.logs import setup as setup_logs
from relay.runtime import build_runtime
from relay_adaptors.kernel import redaction
from relay_adaptors.kernel.redaction import Redactor
from relay_config.loader import parse_config

from .spec import validate_error
from .support import ACME_KEY, ENV, GLOBEX_KEY, UPSTREAM_KEY, base_config, responses_events, sse_frames
from .support.messages import check_error, message_events

HEADER_SECRET = "hdr-secret-token-4242"
ADMIN = "admin-key-for-security-tests"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def log_lines():
    """Relay's production log setup (JSON lines through the redaction filter) into a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buf = io.StringIO()
    setup_logs("debug", stream=buf)
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG)
    yield buf
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


class LeakyUpstream:
    """An OpenAI-compatible upstream that quotes the credentials it got everywhere it can."""

    def __init__(self) -> None:
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        hdr = request.headers.get("X-Secret-Token", "")
        leak = f"{key} {hdr}"
        if body["model"] == "leak-fields":
            err = {"message": f"bad key {leak}", "type": f"t-{key}", "code": f"c-{hdr}", "param": f"p-{key}"}
            return web.json_response({"error": err}, status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        err = {"error": {"message": f"stream broke for {leak}", "type": f"t-{key}", "code": f"c-{hdr}"}}
        await resp.write(b"data: " + json.dumps(err).encode() + b"\n\n")
        await resp.write_eof()
        return resp


@pytest.fixture
async def leaky(aiohttp_server, make_relay, fake_openai):
    upstream = LeakyUpstream()
    server = await aiohttp_server(upstream.app(), host="127.0.0.1")
    channel = f"""\
- name: leaky
  type: openai
  base_url: {str(server.make_url("")).rstrip("/")}/v1
  api_key: ${{UPSTREAM_KEY}}
  headers: {{X-Secret-Token: {HEADER_SECRET}}}
  models: {{gpt-leak-fields: leak-fields, gpt-leak-stream: leak-stream}}
"""
    config = base_config(fake_openai.url, extra_channels=channel).replace("server:\n", f"server:\n  admin_key: {ADMIN}\n")
    return await make_relay(config)


SECRETS = (UPSTREAM_KEY, HEADER_SECRET)


def assert_clean(text: str) -> None:
    for s in SECRETS:
        assert s not in text


async def test_upstream_error_fields_are_all_redacted(leaky, log_lines):
    resp, body = await leaky.post_json("/v1/chat/completions", {"model": "gpt-leak-fields", "messages": HELLO})
    assert resp.status == 400
    err = body["error"]
    assert_clean(json.dumps(err))
    assert err["message"] == "bad key [redacted] [redacted]"
    assert (err["type"], err["code"], err["param"]) == ("t-[redacted]", "c-[redacted]", "p-[redacted]")
    assert_clean(log_lines.getvalue())


async def test_messages_errors_are_redacted_too(leaky, log_lines):
    body = {"model": "gpt-leak-fields", "max_tokens": 10, "messages": HELLO}
    resp, err = await leaky.post_json("/v1/messages", body)
    assert resp.status == 400 and err["error"]["message"] == "bad key [redacted] [redacted]"
    check_error(err)  # Anthropic's shape on the Messages API
    resp, text = await leaky.raw_stream("/v1/messages", {**body, "model": "gpt-leak-stream", "stream": True})
    assert_clean(text)
    assert message_events(text)[-1]["error"]["message"] == "stream broke for [redacted] [redacted]"
    assert_clean(log_lines.getvalue())


async def test_dropped_server_tool_names_are_bounded_and_sanitised(relay):
    tools = [{"type": f"web_search_{i}", "name": f"evil\r\nx-injected: 1{'y' * 300}{i}"} for i in range(40)]
    resp, answer = await relay.post_json("/v1/messages", {"model": "demo", "max_tokens": 10, "messages": HELLO, "tools": tools})
    assert resp.status == 200, answer
    shown = resp.headers["x-relay-dropped-tools"].split(",")
    assert len(shown) <= 16 and all(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) for name in shown)
    assert "x-injected" not in resp.headers


async def test_chat_midstream_error_frame_is_redacted(leaky, log_lines):
    resp, text = await leaky.raw_stream("/v1/chat/completions", {"model": "gpt-leak-stream", "messages": HELLO, "stream": True})
    assert resp.status == 200
    assert_clean(text)
    frames = [json.loads(d) for _, d in sse_frames(text) if d.startswith("{")]
    assert frames[-1]["error"]["message"] == "stream broke for [redacted] [redacted]"
    assert frames[-1]["error"]["type"] == "t-[redacted]"
    assert_clean(log_lines.getvalue())


async def test_responses_failed_event_is_redacted(leaky, log_lines):
    resp, text = await leaky.raw_stream("/v1/responses", {"model": "gpt-leak-stream", "input": "hi", "stream": True})
    assert resp.status == 200
    assert_clean(text)
    failed = responses_events(text)[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["message"] == "stream broke for [redacted] [redacted]"
    assert_clean(log_lines.getvalue())


async def test_log_filter_covers_every_logger_and_exception_text(leaky, log_lines):
    # A third-party logger, an argument, structured fields and a traceback all pass the filter.
    try:
        raise ValueError(f"boom {ADMIN}")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("failed with %s", UPSTREAM_KEY)
    logging.getLogger("relay.access").info("request", extra={"fields": {"k": [ACME_KEY, {"x": GLOBEX_KEY}]}})
    out = log_lines.getvalue()
    for s in (ADMIN, UPSTREAM_KEY, ACME_KEY, GLOBEX_KEY):
        assert s not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert any(line["msg"] == "failed with [redacted]" and "boom [redacted]" in line["exception"] for line in lines)
    assert any(line.get("k") == ["[redacted]", {"x": "[redacted]"}] for line in lines)


async def test_reload_adds_the_new_configs_secrets():
    new_key = "sk-rotated-in-by-reload-777"
    text = base_config("http://127.0.0.1:9").replace("${UPSTREAM_KEY}", new_key, 1)
    assert new_key not in redaction.current().secrets
    async with aiohttp.ClientSession() as session:
        build_runtime(parse_config(text, "t.yaml", env=ENV), session)
    assert redaction.current()(f"key {new_key}!") == "key [redacted]!"


def test_redactor_replaces_longest_first_and_ignores_short_values():
    r = Redactor(["secret-abcdefgh", "secret-abcdefgh-longer", "short"])
    assert r("x secret-abcdefgh-longer y secret-abcdefgh short") == "x [redacted] y [redacted] short"
    assert r.deep({"a": ["secret-abcdefgh", 3, None]}) == {"a": ["[redacted]", 3, None]}
    assert Redactor([])("anything") == "anything"


# --- the HTTP layer ------------------------------------------------------------------------

async def raw_exchange(relay, data: bytes) -> bytes:
    host, port = relay.server.host, relay.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_oversized_authorization_header_is_431_and_logged_without_the_key(relay, log_lines):
    # aiohttp's own answer and log line quote the start of the offending header: the key.
    unknown = "sk-not-configured-but-still-private"
    for key in (ACME_KEY, unknown):
        raw = await raw_exchange(relay, (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                         f"Authorization: Bearer {key}{'A' * 9000}\r\nContent-Length: 2\r\n\r\n{{}}").encode())
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431") or head.startswith(b"HTTP/1.0 431"), raw[:200]
        assert key.encode() not in raw and b"AAAA" not in raw
        assert json.loads(body)["error"]["code"] == "request_header_too_large"
        validate_error(json.loads(body))
    out = log_lines.getvalue()
    assert ACME_KEY not in out and unknown not in out and "AAAA" not in out


async def test_non_utf8_authorization_is_a_400_naming_the_header(relay):
    raw = await raw_exchange(relay, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80abc\r\n"
                                    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw[:300]
    validate_error(json.loads(body))
    err = json.loads(body)["error"]
    assert err["param"] == "authorization" and err["code"] == "invalid_header"


# --- redirects -----------------------------------------------------------------------------

async def test_upstream_redirect_is_a_502_and_never_followed(aiohttp_server, make_relay, fake_openai):
    got: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        got.append(request.headers.get("Authorization", ""))
        return web.json_response({})

    target = web.Application()
    target.router.add_route("*", "/{tail:.*}", elsewhere)
    target_server = await aiohttp_server(target, host="127.0.0.1")
    location = str(target_server.make_url("/v1/chat/completions?token=abc"))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(location)

    origin = web.Application()
    origin.router.add_post("/v1/chat/completions", redirect)
    origin.router.add_post("/v1/responses", redirect)
    origin_server = await aiohttp_server(origin, host="127.0.0.1")
    channel = f"""\
- name: moved
  type: openai
  base_url: {str(origin_server.make_url("")).rstrip("/")}/v1
  api_key: ${{UPSTREAM_KEY}}
  models: {{gpt-moved: m}}
- name: moved-native
  type: openai
  responses: native
  base_url: {str(origin_server.make_url("")).rstrip("/")}/v1
  api_key: ${{UPSTREAM_KEY}}
  models: {{gpt-moved-native: m}}
"""
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel))
    for path, body in (("/v1/chat/completions", {"model": "gpt-moved", "messages": HELLO}),
                       ("/v1/chat/completions", {"model": "gpt-moved", "messages": HELLO, "stream": True}),
                       ("/v1/responses", {"model": "gpt-moved-native", "input": "hi"})):
        resp, answer = await relay.post_json(path, body)
        assert resp.status == 502, answer
        validate_error(answer)
        err = answer["error"]
        assert err["code"] == "upstream_redirect" and "'moved" in err["message"]
        assert location not in json.dumps(answer) and "token=abc" not in json.dumps(answer)
    assert got == []  # the second server received nothing: no key, no prompt


# --- hostile protocol inputs ---------------------------------------------------------------

async def test_json_nested_too_deep_is_a_400_naming_the_field(relay):
    for depth in (200, 1000):
        body = '{"model": "demo", "messages": ' + "[" * depth + "]" * depth + "}"
        resp, err = await relay.post_json("/v1/chat/completions", body)
        assert resp.status == 400, err
        validate_error(err)
        assert err["error"]["param"] == "messages" and err["error"]["code"] == "json_too_deep"
    tools = '{"model": "demo", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": ' + '{"a":' * 300 + "1" + "}" * 300 + "}]}"
    resp, err = await relay.post_json("/v1/responses", tools)
    assert resp.status == 400 and err["error"]["param"] == "tools"
    validate_error(err)
    # Ordinary nesting (a tool schema a few levels deep) is untouched.
    resp = await relay.post("/v1/chat/completions", {"model": "demo", "messages": HELLO, "metadata": {"a": "b"}})
    assert resp.status == 200


LIMITED = """\
- name: metered
  keys: [sk-metered-tenant-123456]
  limits: {tpm: 100000, rpm: 1000}
"""


@pytest.mark.parametrize("value", [-5, 0, 1.5, "100", True, [1], {"a": 1}, 1e300])
async def test_responses_max_output_tokens_is_validated_before_admission(make_relay, fake_openai, value):
    relay = await make_relay(base_config(fake_openai.url, extra_tenants=LIMITED))
    for model in ("demo", "gpt-native"):  # bridged and native paths
        resp, err = await relay.post_json("/v1/responses", {"model": model, "input": "x", "max_output_tokens": value},
                                          key="sk-metered-tenant-123456")
        assert resp.status == 400, err
        assert err["error"]["param"] == "max_output_tokens"
    assert relay.server.app[STORE].ledger == []  # refused before any model call: no row
    assert fake_openai.requests == []


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", "hot"), ("temperature", 3), ("top_p", -1), ("instructions", 5), ("tools", {"a": 1}),
    ("parallel_tool_calls", "yes"), ("reasoning", "high"), ("reasoning", {"effort": 3}), ("text", []),
    ("text", {"format": "json"}), ("metadata", {"a": 1}), ("store", "no"), ("stream", 1), ("truncation", "sometimes"),
    ("user", 7), ("tool_choice", 3), ("input", 5), ("model", ""), ("model", ["demo"]),
])
async def test_responses_fields_of_the_wrong_type_are_400s_naming_them(relay, field, value):
    body = {"model": "demo", "input": "x", field: value}
    resp, err = await relay.post_json("/v1/responses", body)
    assert resp.status == 400, err
    validate_error(err)
    assert err["error"]["param"].split(".")[0] == field


@pytest.mark.parametrize(("field", "value"), [
    ("reasoning_effort", ["high"]), ("reasoning_effort", {"a": 1}), ("response_format", "json"),
    ("response_format", {"type": "json_schema", "json_schema": {"schema": 3}}), ("user", 5), ("seed", "x"),
    ("top_logprobs", -1), ("presence_penalty", 9), ("metadata", {"a": [1]}), ("parallel_tool_calls", "no"),
    ("tool_choice", 3), ("logprobs", "yes"), ("store", 1),
])
async def test_chat_fields_of_the_wrong_type_are_400s_naming_them(claude_relay, field, value):
    for model in ("demo", "claude-text"):
        resp, err = await claude_relay.post_json("/v1/chat/completions", {"model": model, "messages": HELLO, field: value})
        assert resp.status == 400, err
        validate_error(err)
        assert err["error"]["param"].split(".")[0] == field


async def test_tool_results_that_answer_no_earlier_call_are_400s(relay, fake_openai):
    chat = {"model": "gpt-4.1-mini", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "tool", "tool_call_id": "c9", "content": "orphan"},
    ]}
    resp, err = await relay.post_json("/v1/chat/completions", chat)
    assert resp.status == 400 and err["error"]["param"] == "messages[3].tool_call_id", err
    validate_error(err)
    responses = {"model": "gpt-4.1-mini", "input": [
        {"role": "user", "content": "x"},
        {"type": "function_call_output", "call_id": "c1", "output": "early"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]}
    for model in ("gpt-4.1-mini", "gpt-native"):
        resp, err = await relay.post_json("/v1/responses", {**responses, "model": model})
        assert resp.status == 400 and err["error"]["param"] == "input[1].call_id", err
        validate_error(err)
    assert fake_openai.requests == []


async def test_dropped_tool_types_are_bounded_and_sanitised(relay, log_lines):
    tools = [{"type": f"evil\r\nx-injected: {i}" + "z" * 300} for i in range(100)]
    tools += [{"type": "web_search"}, {"type": "web_search"}]
    resp = await relay.post("/v1/responses", {"model": "demo", "input": "x", "tools": tools})
    assert resp.status == 200
    shown = resp.headers["x-relay-dropped-tools"].split(",")
    assert len(shown) <= 16 and all(len(s) <= 64 and s.replace("_", "").replace("-", "").replace(".", "").isalnum() for s in shown)
    assert "x-injected" not in resp.headers
    assert all(len(line) < 2000 for line in log_lines.getvalue().splitlines())


async def test_a_model_outside_the_allowlist_looks_like_an_unknown_one(relay):
    answers = []
    for path, body in (("/v1/chat/completions", {"messages": HELLO}), ("/v1/responses", {"input": "x"})):
        for model in ("gpt-4.1-mini", "no-such-model-anywhere"):
            resp, err = await relay.post_json(path, {"model": model, **body}, key=GLOBEX_KEY)
            answers.append((resp.status, {**err["error"], "message": err["error"]["message"].replace(model, "M")}))
    assert all(a == answers[0] for a in answers) and answers[0][0] == 404


def test_config_secrets_cover_every_kind_and_report_short_operator_secrets():
    text = base_config("http://127.0.0.1:9").replace("server:\n", "server:\n  admin_key: adm\n  metrics_token: scrape-token-123\n")
    text = text.replace("url: memory://", "url: redis://:store-password-99@127.0.0.1:6379/0")
    text = text.replace("base_url: http://127.0.0.1:9/v1", "base_url: http://proxy-user:proxy-password-42@127.0.0.1:9/v1")
    found = redaction.config_secrets(parse_config(text, "t.yaml", env=ENV))
    for secret in (UPSTREAM_KEY, "org-test", ACME_KEY, GLOBEX_KEY, "scrape-token-123", "store-password-99", "adm",
                   "proxy-password-42"):  # a password inside a channel's base_url too
        assert secret in found.values
    assert found.too_short == ["server.admin_key"]


def test_many_secrets_redact_exactly_like_a_few():
    import random

    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/+= "
    secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(8, 30))) for _ in range(300)]
    secrets += [secrets[0] + "-longer", secrets[1][:-1] + "!x"]  # nested and overlapping ones
    many = Redactor(secrets)
    for _ in range(300):
        parts = [rng.choice(secrets) if rng.random() < 0.3 else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
                 for _ in range(rng.randint(1, 8))]
        text = "".join(parts)
        # The reference: one alternation, longest first (what a few secrets use).
        expected = re.sub("|".join(map(re.escape, sorted(set(secrets), key=lambda s: (-len(s), s)))), "[redacted]", text)
        assert many(text) == expected


@pytest.mark.parametrize(("key", "value"), [("description", 5), ("parameters", "x"), ("parameters", [1]), ("strict", "yes")])
async def test_responses_function_tool_fields_are_typed(claude_relay, key, value):
    tool = {"type": "function", "name": "f", key: value}
    for model in ("demo", "claude-text"):
        resp, err = await claude_relay.post_json("/v1/responses", {"model": model, "input": "x", "tools": [tool]})
        assert resp.status == 400 and err["error"]["param"] == f"tools[0].{key}", err
        validate_error(err)
