"""Writing Anthropic Messages answers: a chat stream through the bridge machine, or an
anthropic channel's own bytes relayed as they come with the usage read on the side."""
from __future__ import annotations

from typing import Any

from relay_adaptors.anthropic.errors import stream_error
from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import ChatStream
from relay_adaptors.kernel.errors import RelayError, upstream_bad_response
from relay_adaptors.kernel.sse import encode_event
from relay_adaptors.kernel.usage import Usage
from relay_adaptors.messages import MessagesStream, error_body

from .outcome import Sink, StreamOutcome
from .responses_writer import encoded, write_events
from .sse_scan import EventScanner, frame_data

# Anthropic's own keepalive, sent while the upstream is silent (clients skip it).
PING = encode_event("ping", b'{"type":"ping"}')
# The frames the tap reads (message_start, _delta, _stop, error), by their event line.
_READ = (b"event: message_", b"event:message_", b"event: error", b"event:error")
_DELTA = b"content_block_delta\n"  # the end of the event line of a delta: counted only, about a token each
CHARS_PER_DELTA = 4


async def write_messages_stream(resp: Sink, stream: ChatStream, machine: MessagesStream, outcome: StreamOutcome,
                                request_id: str, channel: str) -> None:
    """Chat chunks through the bridge machine, one write per upstream batch. Text that
    continues the open text block goes out as the machine's frame for it (no event dict)."""
    await write_events(resp, machine.start())
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
                break
            outcome.took(item)
            try:
                frames += encoded(machine.feed(item))
            except ValueError as e:  # a chat stream the machine cannot map (see MessagesStream)
                outcome.error = upstream_bad_response(channel, str(e))
                break
        if outcome.error is not None:
            frames += encoded(machine.fail(outcome.error, request_id))
        if frames:
            await resp.write(b"".join(frames))
        if outcome.error is not None:
            return
    await write_events(resp, machine.finish())
    outcome.finished = True


class MessagesTap:
    """Watches relayed Anthropic bytes (sans-IO): `feed` returns the bytes to relay (as they
    came), and notes usage (cache reads and writes included) from message_start and
    message_delta, generated text, and an in-stream error. `end` returns what is left to
    send: an `error` event when the upstream stopped before message_stop."""

    def __init__(self, streaming: bool, outcome: StreamOutcome, channel: str, request_id: str | None = None):
        self.sse = EventScanner(_READ, _DELTA) if streaming else None
        self.outcome = outcome
        self.channel = channel
        self.request_id = request_id
        self.body: list[bytes] = []
        self.raw: dict[str, Any] = {}  # Anthropic usage, merged as events report it
        self.stopped = False  # message_stop went by
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """The whole frames of `data` (a partial one waits for its end), as they came."""
        if self.sse is None:
            self.body.append(data)
            return data
        scan = self.sse.push(data)
        if scan.counted:  # an estimate, for a stream cut before its usage
            self.outcome.produced(CHARS_PER_DELTA * scan.counted)
        for start, end, kind in scan.hits:
            if kind == b"message_stop":
                self.stopped = True
            elif kind in (b"message_start", b"message_delta", b"error"):
                self._event(kind, frame_data(scan.whole[start:end]))
        return scan.whole

    def _event(self, kind: bytes, data: bytes) -> None:
        try:
            obj = jsonfast.loads(data)
        except jsonfast.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        if kind == b"error":
            self.outcome.error = stream_error(self.channel, obj)
            return
        usage = (obj.get("message") or {}).get("usage") if kind == b"message_start" else obj.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)

    def _usage(self, usage: dict[str, Any]) -> None:
        self.raw.update({k: v for k, v in usage.items() if v is not None})
        self.outcome.usage = Usage.from_anthropic(self.raw).chat()

    def end(self, cut: bool = False) -> bytes:
        """What is left to send: an `error` event when the upstream stopped before
        message_stop; nothing when the answer was `cut` (the client left: no fault of the
        upstream's, so nothing that would count against the channel)."""
        if self.ended:
            return b""
        self.ended = True
        if self.sse is None:
            try:
                usage = jsonfast.loads(b"".join(self.body)).get("usage")
            except (jsonfast.JSONDecodeError, AttributeError):
                return b""
            if isinstance(usage, dict):
                self._usage(usage)
            return b""
        rest = self.sse.flush()  # a frame the upstream never finished
        if self.stopped or self.outcome.error is not None or cut:
            return rest
        # The upstream went away mid-stream: say so in the stream, as Anthropic would.
        self.outcome.error = upstream_bad_response(self.channel, "the stream ended before message_stop")
        return rest + b"\n\n" + encode_event("error", jsonfast.dumps(error_body(self.outcome.error, self.request_id)))
