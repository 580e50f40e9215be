"""Checks for Anthropic Messages streams: framing, event order and the official schemas."""
from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic

from .spec import ANTHROPIC, validate_anthropic_error, validate_message_event
from .support import ACME_KEY, sse_frames


def message_events(text: str) -> list[dict[str, Any]]:
    """The stream's events (pings and comments left out), each checked against its `event:` line."""
    assert "[DONE]" not in text, "a Messages stream has no [DONE]"
    events = []
    for event, data in sse_frames(text):
        ev = json.loads(data)
        assert event == ev["type"], f"event line {event!r} does not name the payload type {ev['type']!r}"
        if ev["type"] != "ping":
            events.append(ev)
    return events


def check_order(events: list[dict[str, Any]]) -> None:
    """message_start first, message_stop last (or one error event), dense indices, one block
    open at a time, every delta's block opened and not yet closed, delta types fit the block."""
    assert events and events[0]["type"] == "message_start", "message_start must come first"
    kinds = {"text": "text_delta", "thinking": ("thinking_delta", "signature_delta"), "tool_use": "input_json_delta"}
    open_index, open_kind, next_index = None, None, 0
    for i, ev in enumerate(events[1:], 1):
        t = ev["type"]
        if t == "error":
            assert i == len(events) - 1, "nothing may follow an error event"
            return
        if t == "content_block_start":
            assert open_index is None, f"block {ev['index']} opened while block {open_index} is open"
            assert ev["index"] == next_index, f"block index {ev['index']}, expected {next_index}"
            open_index, open_kind = ev["index"], ev["content_block"]["type"]
            next_index += 1
        elif t == "content_block_delta":
            assert ev["index"] == open_index, f"delta for block {ev['index']}, open is {open_index}"
            assert ev["delta"]["type"] in kinds.get(open_kind, ()), f"{ev['delta']['type']} in a {open_kind} block"
        elif t == "content_block_stop":
            assert ev["index"] == open_index, f"stop for block {ev['index']}, open is {open_index}"
            open_index = None
        elif t == "message_delta":
            assert open_index is None, "message_delta with a block still open"
            assert events[i + 1]["type"] == "message_stop" and i + 2 == len(events), "message_delta, message_stop end the stream"
        elif t == "message_stop":
            assert i == len(events) - 1
        else:
            raise AssertionError(f"unexpected event {t}")
    assert events[-1]["type"] == "message_stop", "message_stop must come last"


def check_stream(events: list[dict[str, Any]]) -> None:
    """Order, and every event against the official document."""
    check_order(events)
    for ev in events:
        if ev["type"] == "error":
            check_error(ev)
        else:
            validate_message_event(ev)


def check_error(body: dict[str, Any]) -> None:
    """An Anthropic error body. `request_too_large` (what the API sends for 413) is missing
    from the document's error union; the rest of such a body is checked as the 400 shape."""
    if body.get("error", {}).get("type") == "request_too_large":
        body = {**body, "error": {**body["error"], "type": "invalid_request_error"}}
    validate_anthropic_error(body)


def check_message(body: dict[str, Any]) -> None:
    ANTHROPIC.validate("Message", body)


def final_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Message a strict client accumulates from the events (independent of Relay's code)."""
    msg = dict(events[0]["message"])
    msg["content"] = []
    for ev in events[1:]:
        if ev["type"] == "content_block_start":
            msg["content"].append(dict(ev["content_block"], _json=""))
        elif ev["type"] == "content_block_delta":
            block, d = msg["content"][ev["index"]], ev["delta"]
            if d["type"] == "text_delta":
                block["text"] += d["text"]
            elif d["type"] == "thinking_delta":
                block["thinking"] += d["thinking"]
            elif d["type"] == "signature_delta":
                block["signature"] += d["signature"]
            elif d["type"] == "input_json_delta":
                block["_json"] += d["partial_json"]
        elif ev["type"] == "message_delta":
            msg.update(stop_reason=ev["delta"]["stop_reason"], stop_sequence=ev["delta"]["stop_sequence"])
            msg["usage"] = {**msg["usage"], **ev["usage"]}
    for block in msg["content"]:
        raw = block.pop("_json")
        if block["type"] == "tool_use":
            block["input"] = json.loads(raw) if raw else {}
    return msg


HI = [{"role": "user", "content": "hi"}]


def sdk(relay, key: str = ACME_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=relay.url, api_key=key, max_retries=0, timeout=30)


async def raw(relay, body, path="/v1/messages?beta=true", key=ACME_KEY, **headers):
    """(response, text) with Claude Code's headers (x-api-key, anthropic-version)."""
    h = {"x-api-key": key, "anthropic-version": "2023-06-01", **headers}
    async with aiohttp.ClientSession() as s:
        async with s.post(relay.url + path, json=body, headers=h) as resp:
            return resp, (await resp.read()).decode()
