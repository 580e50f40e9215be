"""Writes a chat stream to the client as Responses API events, through the bridge machine."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import ChatStream
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import encode_event
from relay_adaptors.responses import ResponsesStream

from .outcome import Sink, StreamOutcome


def encoded(events: list[dict[str, Any]]) -> list[bytes]:
    return [encode_event(ev["type"], jsonfast.dumps(ev)) for ev in events]


async def write_events(resp: Sink, events: list[dict[str, Any]]) -> None:
    if events:
        await resp.write(b"".join(encoded(events)))


Store = Callable[[dict[str, Any]], Awaitable[None]]


async def write_responses_stream(
    resp: Sink, stream: ChatStream, machine: ResponsesStream, outcome: StreamOutcome, store: Store | None = None
) -> None:
    """Chat chunks through the bridge machine, one write per upstream batch. Text that
    continues the open text part goes out as the machine's frame for it (no event dict).
    `store` gets the final response before its terminal event is written (a stored response
    is findable as soon as the client learns it is done)."""

    async def end(frames: list[bytes], events: list[dict[str, Any]]) -> None:
        if store is not None and machine.response is not None:
            await store(machine.response)
        await resp.write(b"".join(frames + encoded(events)))

    async for batch in stream:
        frames: list[bytes] = []
        for item in batch:
            if isinstance(item, str):
                if (frame := machine.text_frame(item)) is not None:
                    outcome.produced(len(item))
                    frames.append(frame)
                    continue
            elif isinstance(item, RelayError):
                outcome.error = item
                await end(frames, machine.fail(item.redacted()))
                return
            outcome.took(item)
            frames += encoded(machine.feed(item))
        if frames:
            await resp.write(b"".join(frames))
    await end([], machine.finish())
    outcome.finished = True
