"""Writes a chat stream to the client as Responses API events, through the bridge machine."""
from __future__ import annotations

from adaptors import jsonfast
from adaptors.base import ChatStream
from adaptors.errors import RelayError
from adaptors.responses import ResponsesStream
from adaptors.sse import encode_event

from .chat_stream import Sink, StreamOutcome


async def write_events(resp: Sink, events: list[dict]) -> None:
    if events:
        await resp.write(b"".join(encode_event(ev["type"], jsonfast.dumps(ev)) for ev in events))


async def write_responses_stream(
    resp: Sink, stream: ChatStream, machine: ResponsesStream, outcome: StreamOutcome
) -> None:
    async for item in stream:
        if isinstance(item, RelayError):
            outcome.error = item
            await write_events(resp, machine.fail(item))
            return
        if item.get("usage"):
            outcome.usage = item["usage"]
        outcome.chunks += 1
        outcome.saw(item)
        await write_events(resp, machine.feed(item))
    await write_events(resp, machine.finish())
    outcome.finished = True
