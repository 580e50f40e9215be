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

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


async def write_events(resp: Sink, events: list[dict[str, Any]]) -> None:
    if events:
        await resp.write(b"".join(encode_event(ev["type"], jsonfast.dumps(ev)) for ev in events))


Store = Callable[[dict[str, Any]], Awaitable[None]]


async def write_responses_stream(
    resp: Sink, stream: ChatStream, machine: ResponsesStream, outcome: StreamOutcome, store: Store | None = None
) -> None:
    """Chat chunks through the bridge machine, one write per upstream batch. `store` gets the
    final response before its terminal event is written (a stored response is findable as
    soon as the client learns it is done)."""

    async def emit(events: list[dict[str, Any]]) -> None:
        if store is not None and events and events[-1]["type"] in TERMINAL and machine.response is not None:
            await store(machine.response)
        await write_events(resp, events)

    async for batch in stream:
        events: list[dict[str, Any]] = []
        for item in batch:
            if isinstance(item, RelayError):
                outcome.error = item
                events += machine.fail(item.redacted())
                break
            outcome.took(item)
            events += machine.feed(item)
        await emit(events)
        if outcome.error is not None:
            return
    await emit(machine.finish())
    outcome.finished = True
