"""Background responses with `stream: true`: the run writes its events into a log; the client
that created it (and `GET ?stream=true` on this instance) follows the log. A reader that
goes away stops reading, never the run."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from relay_adaptors.responses import Envelope, ResponsesStream

from ..lifecycle import ModelCall
from ..outcome import Sink, StreamOutcome
from ..responses_writer import write_events, write_responses_stream
from ..sse_out import SSE_HEADERS, KeepaliveWriter
from .eventlog import EventLog

if TYPE_CHECKING:
    from ..responses_api import Turn


async def run_streaming(turn: Turn, call: ModelCall, events: EventLog) -> dict[str, Any] | None:
    """Streams the answer into `events`; the final response is stored before its terminal event."""
    answer = await call.dispatch(turn.candidates, turn.plan, True)
    turn.answered = answer
    if answer.raw is not None:
        make_tap, flush = turn.stored_passthrough(answer)  # background responses are always stored
        await call.pipe(answer, make_tap, events, flush)
        return None
    conv = turn.convert(answer.candidate)
    machine = ResponsesStream(Envelope(turn.model, conv.echo, turn.response_id), conv.names)
    stream_in = answer.stream
    assert stream_in is not None

    async def write(sink: Sink, outcome: StreamOutcome) -> None:
        await write_events(sink, machine.start())
        await write_responses_stream(sink, stream_in, machine, outcome, lambda r: turn.store(r, answer))

    await call.feed(answer, write, events)
    return None


async def stream_to_client(request: web.Request, events: EventLog, keepalive: float) -> web.StreamResponse:
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    writer = KeepaliveWriter(resp, keepalive)
    try:
        async for data in events.follow():
            await writer.write(data)
    finally:
        await writer.stop()
    await resp.write_eof()
    return resp
