"""POST /v1/responses/input_tokens and /v1/responses/compact through a real Relay, with the
official openai SDK, on the mock channel, a fake OpenAI chat upstream and a fake Anthropic
upstream. Every body and error is validated against the official spec; the fakes' recorded
requests show what was counted and what the summary call sent."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from relay_adaptors.responses.compact import COMPACT_INSTRUCTIONS, SUMMARY_INTRO, decode_summary

from .fakes.base import FIXTURES
from .spec import validate, validate_error
from .support import ADMIN, GLOBEX_KEY, base_config, store_of

OPENAI_TEXT = "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."
ANTHROPIC_TEXT = "Grüß dich! Hier ist ein Kaffee ☕ und ein 🎉."
TOOLS = [{"type": "function", "name": "exec_command", "description": "Runs a shell command",
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
HISTORY = [
    {"role": "user", "content": "list the files"},
    {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "README.md\nsrc"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Two entries: README.md and src."}]},
    {"role": "user", "content": [{"type": "input_text", "text": "now open src"}]},
]


@pytest.fixture
async def client(claude_relay):
    async with claude_relay.client() as sdk:
        yield sdk


async def count(relay, body, key=None):
    resp, out = await relay.post_json("/v1/responses/input_tokens", body, **({"key": key} if key else {}))
    (validate("TokenCountsResource", out) if resp.status == 200 else validate_error(out))
    return resp, out


async def compact(relay, body, key=None):
    resp, out = await relay.post_json("/v1/responses/compact", body, **({"key": key} if key else {}))
    (validate("CompactResource", out) if resp.status == 200 else validate_error(out))
    return resp, out


async def ledger(relay, n):
    for _ in range(100):
        if len(store_of(relay).ledger) >= n:
            break
        await asyncio.sleep(0.01)
    return store_of(relay).ledger


# --- input_tokens -----------------------------------------------------------------------

async def test_the_sdk_counts_and_the_estimate_is_what_the_mock_channel_bills(claude_relay, client):
    counted = await client.responses.input_tokens.count(model="demo", input=HISTORY, instructions="Be terse.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    # The mock bills Relay's estimate of the chat form: the count is what the call would cost.
    created = await client.responses.create(model="demo", input=HISTORY, instructions="Be terse.")
    assert counted.input_tokens > created.usage.input_tokens  # and the replayed tool call's arguments
    resp, body = await count(claude_relay, {"model": "demo", "input": "hi"})
    assert resp.headers["x-relay-estimate"] == "true" and resp.headers["x-relay-channel"] == "demo"
    plain = (await client.responses.create(model="demo", input="hi")).usage.input_tokens
    assert body == {"object": "response.input_tokens", "input_tokens": plain}


async def test_tools_and_history_count_on_a_chat_channel(claude_relay, fake_openai):
    seen = len(fake_openai.requests)
    _, bare = await count(claude_relay, {"model": "gpt-4.1-mini", "input": "hi"})
    _, tooled = await count(claude_relay, {"model": "gpt-4.1-mini", "input": "hi", "tools": TOOLS})
    _, longer = await count(claude_relay, {"model": "gpt-4.1-mini", "input": HISTORY, "tools": TOOLS})
    assert bare["input_tokens"] < tooled["input_tokens"] < longer["input_tokens"]
    assert len(fake_openai.requests) == seen  # an estimate: nothing was asked upstream


async def test_an_anthropic_channel_asks_its_upstream(claude_relay, client, fake_anthropic):
    counted = await client.responses.input_tokens.count(
        model="claude-text", input=HISTORY, instructions="Be terse.", tools=TOOLS)
    sent = fake_anthropic.last
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body["model"] == "text" and sent.body["system"] == [{"type": "text", "text": "Be terse."}]
    assert [t["name"] for t in sent.body["tools"]] == ["exec_command"]
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert "max_tokens" not in sent.body  # the count endpoint takes no generation settings
    raw = json.dumps(sent.body, ensure_ascii=False, separators=(",", ":")).encode()
    assert counted.input_tokens == len(raw) // 4  # the fake's own number, not an estimate
    resp, _ = await count(claude_relay, {"model": "claude-text", "input": "hi"})
    assert "x-relay-estimate" not in resp.headers and resp.headers["x-relay-channel"] == "claude"


async def test_a_native_responses_channel_gets_an_estimate_of_the_body_as_sent(claude_relay):
    body = {"model": "gpt-native", "input": [{"type": "item_reference", "id": "msg_1"}]}  # not for the bridge
    resp, out = await count(claude_relay, body)
    assert resp.status == 200 and out["input_tokens"] > 0 and resp.headers["x-relay-estimate"] == "true"


# --- compact ----------------------------------------------------------------------------

async def test_compact_on_a_chat_upstream_and_the_next_turn_reads_the_summary(claude_relay, client, fake_openai):
    compacted = await client.responses.compact(model="gpt-4.1-mini", input=HISTORY, instructions="You are a coding agent.")
    assert compacted.object == "response.compaction"
    sent = fake_openai.last.body
    assert sent["model"] == "text" and "tools" not in sent and not sent.get("stream")
    assert sent["messages"][0] == {"role": "system", "content": COMPACT_INSTRUCTIONS}
    transcript = sent["messages"][1]["content"]
    for piece in ("[system]\nYou are a coding agent.", "[user]\nlist the files",
                  '[assistant calls tool exec_command (call_1)]\n{"cmd":"ls"}', "[tool result call_1]\nREADME.md\nsrc",
                  "[assistant]\nTwo entries: README.md and src.", "[user]\nnow open src"):
        assert piece in transcript
    assert [o.type for o in compacted.output] == ["message", "message", "compaction"]
    assert [o.content[0].text for o in compacted.output[:2]] == ["list the files", "now open src"]
    assert decode_summary(compacted.output[2].encrypted_content) == OPENAI_TEXT
    assert (compacted.usage.input_tokens, compacted.usage.output_tokens, compacted.usage.total_tokens) == (19, 17, 36)

    # The client sends the compacted list back as the history of its next turn.
    # (the SDK types compact's output as output items, so user messages warn when dumped)
    history = [o.model_dump(exclude_none=True, warnings=False) for o in compacted.output]
    await client.responses.create(model="gpt-4.1-mini", input=[*history, {"role": "user", "content": "go on"}])
    assert fake_openai.last.body["messages"] == [
        {"role": "user", "content": "list the files"},
        {"role": "user", "content": "now open src"},
        {"role": "user", "content": SUMMARY_INTRO + OPENAI_TEXT},
        {"role": "user", "content": "go on"},
    ]


async def test_compact_on_an_anthropic_upstream(claude_relay, fake_anthropic):
    resp, body = await compact(claude_relay, {"model": "claude-text", "input": HISTORY})
    assert resp.status == 200 and resp.headers["x-relay-channel"] == "claude"
    sent = fake_anthropic.last
    assert sent.path == "/v1/messages" and sent.body["system"] == [{"type": "text", "text": COMPACT_INSTRUCTIONS}]
    assert "tools" not in sent.body  # the history's tool calls are text: no tool definitions needed
    assert [m["role"] for m in sent.body["messages"]] == ["user"]
    assert decode_summary(body["output"][-1]["encrypted_content"]) == ANTHROPIC_TEXT
    assert body["usage"]["input_tokens"] == 21 + 1800 + 200 and body["usage"]["input_tokens_details"]["cached_tokens"] == 1800
    # Compacting again folds the earlier summary into the new transcript.
    await compact(claude_relay, {"model": "claude-text", "input": [*body["output"], {"role": "user", "content": "more"}]})
    assert f"[user]\n{SUMMARY_INTRO}{ANTHROPIC_TEXT}\n\n[user]\nmore" in fake_anthropic.last.body["messages"][0]["content"][0]["text"]


async def test_compact_is_a_model_call_in_the_ledger_and_metrics(claude_relay):
    resp, body = await compact(claude_relay, {"model": "demo", "input": "a long story"})
    assert resp.status == 200 and body["output"][0]["content"][0]["text"] == "a long story"
    assert decode_summary(body["output"][-1]["encrypted_content"]).startswith("Mock answer to: <transcript>")
    row = (await ledger(claude_relay, 1))[-1]
    assert (row.model, row.channel, row.api, row.stream, row.status) == ("demo", "demo", "responses", False, 200)
    assert row.input_tokens == body["usage"]["input_tokens"] > 0


async def test_codex_history_compacts_and_its_next_turn_runs(claude_relay, fake_openai):
    """Codex posts {model, input, instructions} (newer versions add tools and reasoning):
    here the history of its recorded turn 2, then the next turn on the compacted list."""
    turn = json.loads((FIXTURES / "codex" / "responses-request-turn2-after-tool.json").read_text())
    resp, body = await compact(claude_relay, {**{k: v for k, v in turn.items() if k != "stream"}, "model": "gpt-4.1-mini"})
    assert resp.status == 200
    kept = [o["content"][0]["text"] for o in body["output"] if o["type"] == "message"]
    assert kept[-1] == "run echo hi" and body["output"][-1]["type"] == "compaction"
    # Codex drops the developer items of the output and puts its own context back in front.
    developer = [i for i in turn["input"] if i.get("role") == "developer"]
    nxt = {**turn, "model": "gpt-tool", "input": [*developer, *body["output"], {"role": "user", "content": "thanks"}]}
    resp, text = await claude_relay.raw_stream("/v1/responses", nxt)
    assert resp.status == 200 and "response.completed" in text
    assert {"role": "user", "content": SUMMARY_INTRO + OPENAI_TEXT} in fake_openai.last.body["messages"]


async def test_a_stored_chain_is_counted_and_compacted_whole(claude_relay, client, fake_openai):
    first = await client.responses.create(model="gpt-4.1-mini", input="list the files")
    alone = await client.responses.input_tokens.count(model="gpt-4.1-mini", input="now open src")
    chained = await client.responses.input_tokens.count(model="gpt-4.1-mini", input="now open src", previous_response_id=first.id)
    assert chained.input_tokens > alone.input_tokens
    compacted = await client.responses.compact(model="gpt-4.1-mini", input="now open src", previous_response_id=first.id)
    transcript = fake_openai.last.body["messages"][1]["content"]
    assert f"[user]\nlist the files\n\n[assistant]\n{OPENAI_TEXT}\n\n[user]\nnow open src" in transcript
    assert [o.content[0].text for o in compacted.output[:-1]] == ["list the files", "now open src"]
    # another tenant's response is not found, on both endpoints
    for path in ("/v1/responses/input_tokens", "/v1/responses/compact"):
        resp, body = await claude_relay.post_json(path, {"model": "globex-chat", "input": "x", "previous_response_id": first.id},
                                                  key=GLOBEX_KEY)
        validate_error(body)
        assert resp.status == 404 and body["error"]["param"] == "previous_response_id"


# --- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/responses/input_tokens", "/v1/responses/compact"])
async def test_a_tenant_without_the_model_gets_a_404_naming_model(claude_relay, path):
    resp, body = await claude_relay.post_json(path, {"model": "gpt-4.1-mini", "input": "hi"}, key=GLOBEX_KEY)
    validate_error(body)
    assert resp.status == 404 and body["error"]["param"] == "model" and body["error"]["code"] == "model_not_found"
    resp, body = await claude_relay.post_json(path, {"model": "gpt-4.1-mini", "input": "hi"}, key=None)
    validate_error(body)
    assert resp.status == 401


async def test_a_virtual_key_sees_only_the_models_it_allows(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url).replace("server:\n", f"server:\n  admin_key: {ADMIN}\n", 1))
    async with aiohttp.ClientSession() as s:
        async with s.post(relay.ops_url + "/admin/keys", json={"tenant": "acme", "models": ["demo"]},
                          headers={"authorization": f"Bearer {ADMIN}"}) as r:
            secret = (await r.json())["secret"]
    for path in ("/v1/responses/input_tokens", "/v1/responses/compact"):
        resp, body = await relay.post_json(path, {"model": "gpt-4.1-mini", "input": "hi"}, key=secret)
        validate_error(body)
        assert resp.status == 404 and body["error"]["param"] == "model"  # the tenant's model, not the key's
        resp, body = await relay.post_json(path, {"model": "demo", "input": "hi"}, key=secret)
        assert resp.status == 200


@pytest.mark.parametrize("path", ["/v1/responses/input_tokens", "/v1/responses/compact"])
@pytest.mark.parametrize(("body", "param"), [
    ({"input": "hi"}, "model"),
    ({"model": "demo"}, "input"),
    ({"model": "demo", "input": [{"type": "bogus"}]}, "input[0].type"),
    ({"model": "demo", "input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"model": "demo", "input": [{"type": "compaction", "encrypted_content": "gAAAAABopaque"}]}, "input[0].encrypted_content"),
    ({"model": "demo", "input": "hi", "instructions": 3}, "instructions"),
    ({"model": "demo", "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input[0].call_id"),
    ({"model": "demo", "input": "hi", "previous_response_id": "resp_unknown"}, "previous_response_id"),
])
async def test_bad_input_is_a_400_naming_its_param(claude_relay, path, body, param):
    resp, out = await claude_relay.post_json(path, body)
    validate_error(out)
    assert resp.status in ((400, 404) if param == "previous_response_id" else (400,)) and out["error"]["param"] == param


async def test_the_sdk_raises_the_errors_with_their_param(client):
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.compact(model="demo", input=[{"type": "compaction", "encrypted_content": "opaque"}])
    assert e.value.body["param"] == "input[0].encrypted_content"
    with pytest.raises(openai.NotFoundError):
        await client.responses.input_tokens.count(model="no-such-model", input="hi")


async def test_an_upstream_that_writes_no_summary_is_a_502_and_failures_are_not_500(claude_relay):
    resp, body = await compact(claude_relay, {"model": "gpt-tools", "input": "hi"})  # answers with tool calls only
    assert resp.status == 502 and body["error"]["code"] == "bad_upstream_response"
    resp, body = await compact(claude_relay, {"model": "broken-429", "input": "hi"})
    assert resp.status == 429
    statuses = [(r.model, r.status) for r in await ledger(claude_relay, 2)]
    assert statuses == [("gpt-tools", 502), ("broken-429", 429)]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_compaction_trigger_answers_one_compaction_item_the_next_turn_reads(relay, fake_openai, stream):
    from .spec import validate_response_event
    from .support import responses_events

    history = [{"role": "user", "content": "Plan the trip."}, {"role": "assistant", "content": "Rome, then Naples."},
               {"type": "compaction_trigger"}]
    body = {"model": "gpt-4.1-mini", "input": history, "store": False, "stream": stream}
    if stream:
        resp, text = await relay.raw_stream("/v1/responses", body)
        events = responses_events(text)
        for ev in events:
            validate_response_event(ev)
        response = events[-1]["response"]
        assert [e["type"] for e in events][-1] == "response.completed"
    else:
        resp, response = await relay.post_json("/v1/responses", body)
    assert resp.status == 200
    validate("Response", response)
    [item] = response["output"]
    assert item["type"] == "compaction" and item["encrypted_content"].startswith("relay-compaction-v1:")
    summary_call = fake_openai.last.body
    assert "Rome, then Naples." in json.dumps(summary_call["messages"], ensure_ascii=False)
    await relay.client().responses.create(model="gpt-4.1-mini", input=[item, {"role": "user", "content": "And now?"}])
    first = fake_openai.last.body["messages"][0]
    assert first["role"] == "user" and "compacted" in first["content"]
