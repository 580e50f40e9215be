"""Messages on a claude_cli channel: the real pinned CLI behind the bridge."""
from __future__ import annotations

import json

import anthropic
import pytest

from .cli_support import GERMAN, real_cli_config
from .messages_events import check_error, check_message, check_stream, message_events, raw, sdk


async def test_messages_through_the_real_cli(make_relay, fake_anthropic):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    msg = await sdk(relay).messages.create(model="cli-text", max_tokens=100, system="Answer in German.",
                                           messages=[{"role": "user", "content": "hello"}])
    check_message(msg.model_dump(mode="json"))
    assert msg.content[0].text == GERMAN and (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (21, 1800, 200)
    assert any("Answer in German." in b["text"] for b in fake_anthropic.last.body["system"])
    resp, text = await raw(relay, {"model": "cli-thinking", "max_tokens": 100, "stream": True,
                                   "messages": [{"role": "user", "content": "27*453?"}]})
    events = message_events(text)
    check_stream(events)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text"]
    recorded = fake_anthropic.fixture("thinking.sse").decode()
    sig = next(e["delta"]["signature"] for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta")
    assert sig in recorded  # the CLI's thinking signature, carried through chat unchanged
    async with sdk(relay).messages.stream(model="cli-thinking", max_tokens=100, messages=[{"role": "user", "content": "27*453?"}]) as s:
        final = await s.get_final_message()
    assert final.content[0].signature == sig and final.content[1].text == "27 × 453 = 12,231."


async def test_client_tools_on_a_cli_channel_are_a_400_naming_tools(make_relay, fake_anthropic):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    resp, text = await raw(relay, {"model": "cli-text", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                                   "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]})
    body = json.loads(text)
    assert resp.status == 400 and "tools" in body["error"]["message"] and "claude_cli" in body["error"]["message"]
    check_error(body)
    assert not fake_anthropic.requests  # refused before any process started
    with pytest.raises(anthropic.BadRequestError):
        await sdk(relay).messages.create(model="cli-text", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                                         tools=[{"name": "Bash", "input_schema": {"type": "object"}}])
