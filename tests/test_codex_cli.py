"""The real Codex CLI (pinned, `codex exec` with its default settings) through Relay's
Responses bridge onto an OpenAI chat-only upstream: a one-shot answer, and a shell tool
round trip. A recorder in front of Relay notes every request Codex made and every answer
Relay gave, and is Codex's HTTP(S) proxy, so any traffic to elsewhere would show."""
from __future__ import annotations

import json
from pathlib import Path

from .fakes.client_recorder import ClientCall, ClientRecorder
from .fakes.codex_loop import RUN_MARKER, CodexLoopUpstream
from .spec import validate_response_event
from .support import ACME_KEY, responses_events, serve_fake, store_of
from .support.codex import run_codex

BONJOUR = "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."  # tests/fixtures/openai/chat-text.sse


def loop_config(url: str) -> str:
    return f"""\
store: {{url: memory://}}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
    models: ["codex-*"]
channels:
  - name: chat-only
    type: openai
    base_url: {url}/v1
    api_key: sk-codex-upstream
    models: {{codex-chat: gpt-4.1}}
"""


async def serve(make_relay, aiohttp_server, upstream: CodexLoopUpstream | None = None):
    upstream = await serve_fake(upstream or CodexLoopUpstream(), aiohttp_server)
    relay = await make_relay(loop_config(upstream.url))
    front = await serve_fake(ClientRecorder(relay.url), aiohttp_server)
    return upstream, relay, front


def turn_metadata(call: ClientCall) -> dict:
    return json.loads(call.headers["x-codex-turn-metadata"])


def check_codex_calls(front: ClientRecorder, turns: int) -> list[ClientCall]:
    """What Codex, with its defaults, needs from Relay: only streamed POST /v1/responses,
    stateless (store false, the whole history each turn, no previous_response_id), and
    Relay's answers are spec-valid Responses streams that end in response.completed."""
    assert front.proxied == []  # nothing but Relay: no update check, analytics or login traffic
    posts = [c for c in front.calls if c.method != "GET"]  # GETs: see the built-in provider's test
    assert [(c.method, c.path, c.status) for c in posts] == [("POST", "/v1/responses", 200)] * turns
    for call in posts:
        body = call.body
        assert isinstance(body, dict), "Codex compressed its request body"
        assert body["model"] == "codex-chat" and body["stream"] is True and body["store"] is False
        assert "previous_response_id" not in body and body["include"] == ["reasoning.encrypted_content"]
        assert call.headers["Authorization"] == f"Bearer {ACME_KEY}"
        events = responses_events(call.answer.decode())
        for event in events:
            validate_response_event(event)
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    return posts


async def test_codex_one_shot_prints_the_answer(make_relay, aiohttp_server, tmp_path: Path):
    upstream, relay, front = await serve(make_relay, aiohttp_server)
    run = await run_codex(tmp_path, front.url, front.url, ACME_KEY, "codex-chat", "Say hello in French.")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == BONJOUR  # exec prints the last agent message on stdout
    (call,) = check_codex_calls(front, 1)
    assert call.body["input"][-1]["content"] == [{"type": "input_text", "text": "Say hello in French."}]
    (chat,) = upstream.requests
    assert chat.path == "/v1/chat/completions" and chat.body["model"] == "gpt-4.1" and chat.body["stream"] is True
    assert chat.headers["Authorization"] == "Bearer sk-codex-upstream"
    assert chat.body["messages"][0]["role"] == "system" and "Codex CLI" in chat.body["messages"][0]["content"]
    assert chat.body["messages"][-1] == {"role": "user", "content": "Say hello in French."}
    assert [(r.model, r.channel, r.api, r.status) for r in store_of(relay).ledger] == [
        ("codex-chat", "chat-only", "responses", 200)]


async def run_tool_loop(tmp_path: Path, front: ClientRecorder, *, builtin_openai: bool = False):
    run = await run_codex(tmp_path, front.url, front.url, ACME_KEY, "codex-chat",
                          f"{RUN_MARKER} `echo relay-$((6*7))` and tell me what it printed.", "--json",
                          builtin_openai=builtin_openai)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


async def test_codex_shell_tool_round_trip(make_relay, aiohttp_server, tmp_path: Path):
    upstream, relay, front = await serve(make_relay, aiohttp_server)
    run = await run_tool_loop(tmp_path, front)
    items = [e["item"] for e in run.events() if e["type"] == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert len(commands) == 1 and commands[0]["exit_code"] == 0 and commands[0]["aggregated_output"] == "relay-42\n"
    assert [i["text"] for i in items if i["type"] == "agent_message"] == ["The command printed relay-42."]
    first, second = check_codex_calls(front, 2)
    # Turn 2 carries the call Relay gave Codex and the shell's output, as Responses items.
    sent = {i["type"]: i for i in second.body["input"] if i["type"] in ("function_call", "function_call_output")}
    assert sent["function_call"]["name"] == "exec_command" and sent["function_call"]["call_id"] == "call_CodexExec01"
    assert sent["function_call_output"]["call_id"] == "call_CodexExec01" and "relay-42" in sent["function_call_output"]["output"]
    # ...which the bridge forwarded as chat: the assistant's tool call, then the tool message.
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"] * 2
    tools = [t["function"]["name"] for t in upstream.requests[0].body["tools"]]
    assert "exec_command" in tools
    call_msg, tool_msg = upstream.requests[1].body["messages"][-2:]
    assert call_msg["role"] == "assistant" and call_msg["tool_calls"][0]["id"] == "call_CodexExec01"
    assert json.loads(call_msg["tool_calls"][0]["function"]["arguments"]) == {"cmd": "echo relay-$((6*7))"}
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_CodexExec01"
    assert "Output:\nrelay-42" in tool_msg["content"]  # the shell computed it; no fake knows it
    assert [(r.model, r.channel, r.api, r.status) for r in store_of(relay).ledger] == [
        ("codex-chat", "chat-only", "responses", 200)] * 2


async def test_codex_compacts_a_full_context_through_plain_responses(make_relay, aiohttp_server, tmp_path: Path):
    """Codex's auto-compaction on a custom provider is one more POST /v1/responses (its
    summary prompt as a user message), not /v1/responses/compact: Relay needs nothing else."""
    upstream, relay, front = await serve(make_relay, aiohttp_server, CodexLoopUpstream(full_context=True))
    await run_tool_loop(tmp_path, front)
    first, compaction, resumed = check_codex_calls(front, 3)
    assert "compaction" not in turn_metadata(first)
    assert turn_metadata(compaction)["compaction"]["implementation"] == "responses"
    summarize = compaction.body["input"][-1]
    assert summarize["role"] == "user" and "COMPACTION" in summarize["content"][0]["text"]
    assert compaction.body["input"][-2]["type"] == "function_call_output"  # the tool ran before compacting
    # The resumed request carries the summary (the fake's text answer) instead of the old turns.
    assert BONJOUR in resumed.body["input"][-1]["content"][0]["text"]
    assert not any(i["type"].startswith("function_call") for i in resumed.body["input"])
    assert len(upstream.requests) == 3 and len(store_of(relay).ledger) == 3


# Codex's own `openai` provider moved to Relay (`openai_base_url`, key in CODEX_API_KEY),
# as users who only change the base URL run it. It differs from a custom provider in two ways
# that Relay meets: it opens a WebSocket first, and compacts remotely (v2).


async def test_codex_builtin_openai_provider_falls_back_from_websockets(make_relay, aiohttp_server, tmp_path: Path):
    """Relay has no Responses WebSocket: the upgrade GET is a 426 and Codex, without retrying,
    runs the turn over HTTPS."""
    upstream, relay, front = await serve(make_relay, aiohttp_server)
    run = await run_tool_loop(tmp_path, front, builtin_openai=True)
    items = [e["item"] for e in run.events() if e["type"] == "item.completed"]
    assert [i["text"] for i in items if i["type"] == "agent_message"] == ["The command printed relay-42."]
    upgrades = [c for c in front.calls if c.method == "GET"]
    assert len(upgrades) == 1, upgrades  # 426: Codex falls back to HTTPS at once, no retries
    assert all(c.path == "/v1/responses" and c.status == 426 and c.headers["Upgrade"] == "websocket"
                            and c.headers["OpenAI-Beta"].startswith("responses_websockets=") for c in upgrades)
    assert front.calls.index(upgrades[-1]) < front.calls.index(check_codex_calls(front, 2)[0])  # WebSocket first
    assert len(upstream.requests) == 2


async def test_codex_builtin_openai_provider_compacts_remotely(make_relay, aiohttp_server, tmp_path: Path):
    """On its built-in provider Codex compacts with a `compaction_trigger` input item on a
    plain POST /v1/responses (not /v1/responses/compact) and needs one `compaction` output item."""
    upstream, relay, front = await serve(make_relay, aiohttp_server, CodexLoopUpstream(full_context=True))
    await run_tool_loop(tmp_path, front, builtin_openai=True)
    first, compaction, resumed = check_codex_calls(front, 3)
    assert compaction.body["input"][-1] == {"type": "compaction_trigger"}
    assert turn_metadata(compaction)["compaction"]["implementation"] == "responses_compaction_v2"
    # Relay's compaction item came back in the next turn and reached the model as the summary
    assert any(i.get("type") == "compaction" for i in resumed.body["input"])
    assert "This conversation was compacted" in json.dumps(upstream.requests[-1].body["messages"])
