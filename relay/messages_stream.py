"""Writing Anthropic Messages answers: a chat stream through the bridge machine, or an
anthropic channel's own bytes relayed as they come with the usage read on the side."""
from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from relay_adaptors import jsonfast
from relay_adaptors.anthropic.errors import stream_error
from relay_adaptors.anthropic.usage import chat_usage
from relay_adaptors.base import Call, ChatStream, NativeMessages
from relay_adaptors.errors import RelayError, upstream_bad_response
from relay_adaptors.messages import MessagesStream, error_body
from relay_adaptors.sse import SSEDecoder, encode_event

from .accounting import Accounting
from .chat_stream import Sink, StreamOutcome
from .sse_out import SSE_HEADERS, finish

# Anthropic's own keepalive, sent while the upstream is silent (clients skip it).
PING = encode_event("ping", b'{"type":"ping"}')


async def write_events(resp: Sink, events: list[dict[str, Any]]) -> None:
    if events:
        await resp.write(b"".join(encode_event(ev["type"], jsonfast.dumps(ev)) for ev in events))


async def write_messages_stream(resp: Sink, stream: ChatStream, machine: MessagesStream, outcome: StreamOutcome,
                                request_id: str, channel: str) -> None:
    """Chat chunks through the bridge machine, one write per upstream batch."""
    await write_events(resp, machine.start())
    async for batch in stream:
        events: list[dict[str, Any]] = []
        for item in batch:
            if isinstance(item, RelayError):
                outcome.error = item
                break
            if item.get("usage"):
                outcome.usage = item["usage"]
            outcome.saw(item)
            try:
                events += machine.feed(item)
            except ValueError as e:  # a chat stream the machine cannot map (see MessagesStream)
                outcome.error = upstream_bad_response(channel, str(e))
                break
        if outcome.error is not None:
            events += machine.fail(outcome.error, request_id)
        await write_events(resp, events)
        if outcome.error is not None:
            return
    await write_events(resp, machine.finish())
    outcome.finished = True


class MessagesUsageTap:
    """Watches relayed Anthropic bytes: usage (cache reads and writes included) from
    message_start and message_delta, the first content's time, an in-stream error."""

    def __init__(self, streaming: bool, channel: str, outcome: StreamOutcome):
        self.sse = SSEDecoder() if streaming else None
        self.channel = channel
        self.outcome = outcome
        self.body: list[bytes] = []
        self.raw: dict[str, Any] = {}  # Anthropic usage, merged as events report it
        self.stopped = False  # message_stop went by

    @property
    def usage(self) -> dict[str, Any] | None:
        return chat_usage(self.raw) if self.raw else None

    def feed(self, data: bytes) -> None:
        if self.sse is None:
            self.body.append(data)
            return
        for ev in self.sse.feed(data):
            kind = ev.event
            if kind == "content_block_delta":
                if self.outcome.first_chunk_at is None:
                    self.outcome.first_chunk_at = time.monotonic()
                self.outcome.output_chars += len(ev.data) // 2  # an estimate, for a stream cut before usage
            elif kind in ("message_start", "message_delta", "error"):
                self._event(kind, ev.data)
            elif kind == "message_stop":
                self.stopped = True

    def _event(self, kind: str, data: str) -> None:
        try:
            obj = jsonfast.loads(data)
        except jsonfast.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        if kind == "error":
            self.outcome.error = stream_error(self.channel, obj)
            return
        usage = (obj.get("message") or {}).get("usage") if kind == "message_start" else obj.get("usage")
        if isinstance(usage, dict):
            self.raw.update({k: v for k, v in usage.items() if v is not None})

    def close(self) -> None:
        if self.sse is None and self.body:
            try:
                usage = jsonfast.loads(b"".join(self.body)).get("usage")
            except (jsonfast.JSONDecodeError, AttributeError):
                return
            if isinstance(usage, dict):
                self.raw.update(usage)


async def relay_messages(request: web.Request, adaptor: NativeMessages, call: Call, channel: str,
                         headers: dict[str, str], acct: Accounting) -> web.StreamResponse:
    """An anthropic channel's answer, byte for byte."""
    upstream = await adaptor.messages_passthrough(call)
    streaming = upstream.content_type.startswith("text/event-stream")
    acct.outcome = StreamOutcome()
    tap = MessagesUsageTap(streaming, channel, acct.outcome)
    try:
        resp = web.StreamResponse(status=upstream.status, headers={"Content-Type": upstream.content_type, **headers})
        if streaming:
            resp.headers.update({k: v for k, v in SSE_HEADERS.items() if k != "Content-Type"})
        await resp.prepare(request)
        async for data in upstream.chunks:
            tap.feed(data)
            await resp.write(data)
        if streaming and not tap.stopped and acct.outcome.error is None:
            # The upstream went away mid-stream: say so in the stream, as Anthropic would.
            acct.outcome.error = upstream_bad_response(channel, "the stream ended before message_stop")
            await resp.write(b"\n\n" + encode_event("error", jsonfast.dumps(error_body(acct.outcome.error, call.request_id))))
        await resp.write_eof()
        acct.outcome.finished = acct.outcome.error is None
        return resp
    finally:
        await finish(upstream.chunks.aclose())
        tap.close()
        acct.usage = tap.usage
