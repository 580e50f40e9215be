"""Writes a chat stream to the client as Responses API events, through the bridge machine."""
from __future__ import annotations

from typing import Any

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import ChatStream
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import encode_event
from relay_adaptors.responses import ResponsesStream

from .outcome import Sink, StreamOutcome


async def write_events(resp: Sink, events: list[dict[str, Any]]) -> None:
    if events:
        await resp.write(b"".join(encode_event(ev["type"], jsonfast.dumps(ev)) for ev in events))


async def write_responses_stream(
    resp: Sink, stream: ChatStream, machine: ResponsesStream, outcome: StreamOutcome
) -> None:
    """Chat chunks through the bridge machine, one write per upstream batch."""
    async for batch in stream:
        events: list[dict[str, Any]] = []
        for item in batch:
            if isinstance(item, RelayError):
                outcome.error = item
                events += machine.fail(item.redacted())
                break
            if item.get("usage"):
                outcome.usage = item["usage"]
            outcome.saw(item)
            events += machine.feed(item)
        await write_events(resp, events)
        if outcome.error is not None:
            return
    await write_events(resp, machine.finish())
    outcome.finished = True
