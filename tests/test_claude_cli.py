"""The claude_cli channel with the real `claude` binary (pinned, installed by `make test`)
against the fake Anthropic server, plus a stand-in binary for faults the real one cannot show."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from relay.appkeys import STORE

from .cli_support import (
    CLI_KEY,
    GERMAN,
    HELLO,
    gone,
    post,
    private_tmp,
    processes,
    real_cli_config,
    stand_in_config,
)
from .spec import validate, validate_error, validate_response_event
from .support import ACME_KEY, responses_events, scrape, sse_frames, value


@pytest.fixture(autouse=True)
def cli_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_tmp(tmp_path, monkeypatch)


# --- the real CLI --------------------------------------------------------------------------

async def test_chat_through_the_real_cli(make_relay, fake_anthropic, cli_tmp):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    client = relay.client()
    full = await client.chat.completions.create(model="cli-text", messages=HELLO)
    validate("CreateChatCompletionResponse", full.model_dump(mode="json", exclude_unset=True))
    assert full.choices[0].message.content == GERMAN and full.choices[0].finish_reason == "stop"
    # Usage as the fake reported it: input 21 + cache read 1800 + cache write 200.
    assert (full.usage.prompt_tokens, full.usage.completion_tokens, full.usage.prompt_tokens_details.cached_tokens) == (2021, 18, 1800)
    sent = fake_anthropic.last
    assert sent.headers["x-api-key"] == CLI_KEY and sent.body["model"] == "text"
    assert not sent.body.get("tools")
    assert any("Answer in German." in b["text"] for b in sent.body["system"])
    assert "hello" in json.dumps(sent.body["messages"])
    assert await gone(cli_tmp)


async def test_streams_through_the_real_cli(make_relay, fake_anthropic):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    resp, text = await relay.raw_stream("/v1/chat/completions", {"model": "cli-text", "messages": HELLO, "stream": True,
                                                                 "stream_options": {"include_usage": True}, "temperature": 0.2})
    assert resp.status == 200 and resp.headers["x-relay-ignored-params"] == "temperature"
    chunks = [json.loads(d) for _, d in sse_frames(text) if d != "[DONE]"]
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == GERMAN
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 4  # token by token
    assert chunks[-1]["usage"]["prompt_tokens"] == 2021
    async with relay.client().chat.completions.stream(model="cli-thinking", messages=HELLO) as s:
        final = await s.get_final_completion()
    assert final.choices[0].message.content == "27 × 453 = 12,231."


async def test_responses_through_the_real_cli(make_relay, fake_anthropic):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    client = relay.client()
    r = await client.responses.create(model="cli-text", input="hello", instructions="Answer in German.")
    assert r.output_text == GERMAN and r.usage.input_tokens == 2021
    assert any("Answer in German." in b["text"] for b in fake_anthropic.last.body["system"])
    resp, text = await relay.raw_stream("/v1/responses", {"model": "cli-thinking", "input": "27*453?", "stream": True})
    events = responses_events(text)
    for ev in events:
        validate_response_event(ev)
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["reasoning", "message"]
    raw = await relay.post("/v1/responses", {"model": "cli-max", "input": "story"})
    body = json.loads(await raw.read())
    validate("Response", body)
    assert body["status"] == "incomplete"


@pytest.mark.parametrize("model, status", [("cli-429", 429), ("cli-529", 503), ("cli-500", 502), ("cli-400", 400)])
async def test_cli_errors_map_like_the_anthropic_channel(make_relay, fake_anthropic, model, status):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    r, body = await post(relay, {"model": model, "messages": HELLO})
    assert r.status == status
    validate_error(body)
    assert CLI_KEY not in json.dumps(body)
    assert len(fake_anthropic.requests) == 1  # the CLI did not retry on its own


async def test_timeouts_kill_the_cli(make_relay, fake_anthropic, cli_tmp):
    relay = await make_relay(real_cli_config(fake_anthropic.url, timeout="{first_byte: 3, idle: 1, total: 30}"))
    r, body = await post(relay, {"model": "cli-hang", "messages": HELLO})
    assert r.status == 504 and "first_byte" in body["error"]["message"]
    # A first_byte long enough for the CLI to start on a loaded machine, so idle is what fires.
    relay = await make_relay(real_cli_config(fake_anthropic.url, timeout="{first_byte: 20, idle: 1, total: 30}"))
    resp, text = await post(relay, {"model": "cli-hang-mid", "messages": HELLO}, stream=True)
    err = json.loads(sse_frames(text)[-1][1])
    validate_error(err)
    assert err["error"]["code"] == "upstream_timeout" and "idle" in err["error"]["message"]
    assert await gone(cli_tmp, within=4)


async def test_disconnect_kills_the_cli_within_a_second(make_relay, fake_anthropic, cli_tmp):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/chat/completions", json={"model": "cli-paced", "messages": HELLO, "stream": True},
                            headers={"Authorization": f"Bearer {ACME_KEY}"})
        await resp.content.readuntil(b"\n\n")
        assert processes(cli_tmp)
        resp.close()
        left = loop.time()
    assert await gone(cli_tmp, within=1.0), f"still running {loop.time() - left:.2f}s after the client left"


# --- the stand-in ------------------------------------------------------------------------

@pytest.mark.parametrize("mode, message", [("crash", "ended without an answer (exit code 3)"), ("garbage", "not JSON")])
async def test_broken_cli_output_is_502(make_relay, tmp_path, mode, message):
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, mode, marker))
    r, body = await post(relay, {"model": "cli", "messages": HELLO})
    assert r.status == 502 and message in body["error"]["message"]
    assert "something broke" not in body["error"]["message"]  # stderr is logged, not sent
    validate_error(body)
    assert await gone(marker)


async def test_missing_binary_is_502_without_the_path(make_relay, tmp_path, caplog):
    relay = await make_relay(stand_in_config(tmp_path, "crash", "m", command="/nonexistent/claude"))
    r, body = await post(relay, {"model": "cli", "messages": HELLO})
    assert r.status == 502 and body["error"]["code"] == "upstream_unreachable"
    validate_error(body)
    assert "/nonexistent" not in json.dumps(body) and "No such file" not in json.dumps(body)  # server details stay home
    assert "cannot start '/nonexistent/claude'" in caplog.text  # ... and go to the log


async def test_a_2mb_line_is_read_whole(make_relay, tmp_path):
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, "bigline", marker))
    r, body = await post(relay, {"model": "cli", "messages": HELLO})
    assert r.status == 200 and len(body["choices"][0]["message"]["content"]) == 2 * 1024 * 1024
    assert body["usage"]["completion_tokens"] == 7  # from the result line
    rec = relay.server.app[STORE].ledger[-1]
    assert rec.cost_usd == 0.0001 and rec.output_tokens == 7  # usage and cost from the result line
    assert await gone(marker)


async def test_the_child_gets_a_minimal_environment(make_relay, tmp_path, monkeypatch, cli_tmp):
    monkeypatch.setenv("RELAY_CANARY_SECRET", "canary-value")
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, "env", marker))
    r, body = await post(relay, {"model": "cli", "messages": HELLO})
    env = json.loads(body["choices"][0]["message"]["content"])
    assert "RELAY_CANARY_SECRET" not in env and "UPSTREAM_KEY" not in env
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0" and env["DISABLE_TELEMETRY"] == "1"
    assert env["HOME"].startswith(f"{cli_tmp}/relay-cli-") and not Path(env["HOME"]).exists()  # removed afterwards


async def test_stubborn_process_group_is_killed(make_relay, tmp_path):
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, "stubborn", marker, timeout="{first_byte: 5, idle: 1, total: 30}"))
    resp, text = await post(relay, {"model": "cli", "messages": HELLO}, stream=True)
    assert json.loads(sse_frames(text)[-1][1])["error"]["code"] == "upstream_timeout"
    assert await gone(marker, within=5)  # SIGTERM ignored: SIGKILL to the group after the grace period


async def test_queueing_then_429_after_queue_timeout(make_relay, tmp_path):
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, "slow", marker, max_concurrent=1, queue_timeout=1.2))
    loop = asyncio.get_running_loop()

    async def timed(body):
        t = loop.time()
        r = await relay.post("/v1/chat/completions", body)
        return r.status, loop.time() - t, await r.read()

    first = asyncio.create_task(timed({"model": "cli", "messages": HELLO}))
    await asyncio.sleep(0.3)
    assert value(await scrape(relay.ops_url), "relay_cli_processes", channel="fake-cli") == 1
    second = asyncio.create_task(timed({"model": "cli", "messages": HELLO}))  # waits ~2.2 s: longer than queue_timeout
    status1, took1, _ = await first
    status2, took2, body2 = await second
    assert status1 == 200 and took1 > 2
    assert status2 == 429 and 1.1 < took2 < 2.0
    err = json.loads(body2)
    validate_error(err)
    assert err["error"]["code"] == "channel_busy"
    assert value(await scrape(relay.ops_url), "relay_cli_processes", channel="fake-cli") == 0

    relay2 = await make_relay(stand_in_config(tmp_path, "slow", marker, max_concurrent=1, queue_timeout=10))
    a = asyncio.create_task(relay2.post("/v1/chat/completions", {"model": "cli", "messages": HELLO}))
    await asyncio.sleep(0.3)
    t = loop.time()
    b = await relay2.post("/v1/chat/completions", {"model": "cli", "messages": HELLO})
    assert (await a).status == 200 and b.status == 200
    assert loop.time() - t > 3.5  # it queued behind the first, then ran its own ~2.5 s
    assert await gone(marker)


@pytest.mark.parametrize("body, param", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
])
async def test_what_the_cli_cannot_do_is_a_400(make_relay, tmp_path, body, param):
    relay = await make_relay(stand_in_config(tmp_path, "env", "m"))
    r, out = await post(relay, {"model": "cli", "messages": HELLO, **body})
    assert r.status == 400 and out["error"]["param"] == param and "claude_cli" in out["error"]["message"]
