"""`responses: native`: the upstream speaks Responses. Its frames are relayed as they come,
byte for byte, except the few that carry the response object, whose `model` becomes the name
the client asked for (the same rule as every other path). On the side the tap reads what the
ledger needs. Sans-IO: bytes in, bytes out, facts into the outcome."""
from __future__ import annotations

from typing import Any

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.sse import encode_event
from relay_adaptors.kernel.usage import Usage

from .outcome import StreamOutcome

_TERMINAL = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})
_LIFECYCLE = _TERMINAL | {b"response.created", b"response.in_progress", b"response.queued"}
# Events whose `delta` is generated text: counted (not parsed) for an estimate if the stream
# is cut before its usage arrives. A delta carries about one token.
_TEXT_DELTAS = frozenset({b"response.output_text.delta", b"response.function_call_arguments.delta",
                          b"response.reasoning_summary_text.delta", b"response.reasoning_text.delta", b"response.refusal.delta"})
CHARS_PER_DELTA = 4
MAX_BODY = 64 << 20  # a non-streamed answer is held whole to rename its model; past this it passes as is


def chat_usage(resp_usage: Any) -> dict[str, Any] | None:
    """Responses usage in the chat shape the ledger reads."""
    return Usage.from_responses(resp_usage).chat() if isinstance(resp_usage, dict) else None


class FrameSplitter:
    """Cuts an SSE byte stream into whole frames (each up to and including its blank line),
    the bytes untouched."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def push(self, data: bytes) -> list[bytes]:
        buf = self.buf + data if self.buf else data
        frames: list[bytes] = []
        start = 0
        if b"\r" not in buf:  # the usual case: one search per frame, never past the next end
            while (end := buf.find(b"\n\n", start)) >= 0:
                frames.append(buf[start:end + 2])
                start = end + 2
        else:
            # Each search runs again only once its last hit was consumed (no rescans of the rest).
            lf, crlf = buf.find(b"\n\n"), buf.find(b"\r\n\r\n")
            while lf >= 0 or crlf >= 0:
                end = lf + 2 if crlf < 0 or 0 <= lf < crlf else crlf + 4
                frames.append(buf[start:end])
                start = end
                if 0 <= lf < start:
                    lf = buf.find(b"\n\n", start)
                if 0 <= crlf < start:
                    crlf = buf.find(b"\r\n\r\n", start)
        self.buf = buf[start:]
        return frames

    def flush(self) -> bytes:
        rest, self.buf = self.buf, b""
        return rest


def _event_name(frame: bytes) -> bytes:
    """The frame's `event:` name (upstreams put that line first), without reading the rest."""
    if frame.startswith(b"event:"):
        end = frame.find(b"\n")
        return frame[6:end if end >= 0 else None].strip()
    for line in frame.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip()
    return b""


def _data(frame: bytes) -> bytes:
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in frame.splitlines() if line.startswith(b"data:"))


class ResponsesTap:
    """Watches relayed Responses bytes (an event stream or one JSON body)."""

    def __init__(self, streaming: bool, outcome: StreamOutcome, model: str, response_id: str | None = None,
                 hold_final: bool = False, echo: dict[str, Any] | None = None):
        self.frames = FrameSplitter() if streaming else None
        self.outcome = outcome
        self.model = model
        self.response_id = response_id  # Relay's id for the response (stored responses), else the upstream's
        self.echo = echo or {}  # the request fields Relay resolved itself (previous_response_id, store, ...)
        # Stored responses: the terminal event (or the whole body) is held back until the
        # response is stored, so a client that continues at once finds it.
        self.hold_final = hold_final
        self.final: dict[str, Any] | None = None
        self.holding = False
        self.held = b""
        self.body: list[bytes] = []
        self.size = 0
        self.ended = False

    def release(self) -> tuple[dict[str, Any] | None, bytes]:
        """The final response held back (once) and the bytes to relay after storing it."""
        final, held = self.final, self.held
        self.final, self.held, self.holding = None, b"", False
        return final, held

    def feed(self, data: bytes) -> bytes:
        """The bytes to relay for `data`."""
        if self.frames is None:
            self.size += len(data)
            if self.size > MAX_BODY:
                held, self.body = b"".join(self.body) + data, []
                return held
            self.body.append(data)
            return b""
        if not self.hold_final:
            return b"".join([self._frame(f) for f in self.frames.push(data)])
        out: list[bytes] = []
        for f in self.frames.push(data):
            frame = self._frame(f)
            if self.holding:  # everything from the terminal event on waits with it
                self.held += frame
            else:
                out.append(frame)
        return b"".join(out)

    def _frame(self, frame: bytes) -> bytes:
        event = _event_name(frame)
        if event in _TEXT_DELTAS:
            self.outcome.produced(CHARS_PER_DELTA)
            return frame
        if event not in _LIFECYCLE:
            return frame
        try:
            payload = jsonfast.loads(_data(frame))
        except jsonfast.JSONDecodeError:
            return frame
        if not isinstance(payload, dict):
            return frame
        response = payload.get("response")
        if not isinstance(response, dict):
            return frame
        response["model"] = self.model
        response.update(self.echo)
        if self.response_id is not None:
            response["id"] = self.response_id
        frame = encode_event(event.decode(), jsonfast.dumps(payload))
        if event in _TERMINAL:
            self.outcome.usage = chat_usage(response.get("usage"))
            if self.hold_final:
                self.final, self.holding = response, True
        return frame

    def end(self) -> bytes:
        """The upstream finished: what is left to relay. Also called (and its bytes dropped)
        when the answer was cut, so what was seen is kept for the ledger."""
        if self.ended:
            return b""
        self.ended = True
        if self.frames is not None:
            rest = self.frames.flush()
            if self.holding:
                self.held, rest = self.held + rest, b""
            return rest
        body, self.body = b"".join(self.body), []
        if not body:
            return b""
        try:
            payload = jsonfast.loads(body)
        except jsonfast.JSONDecodeError:
            return body
        if not isinstance(payload, dict):
            return body
        self.outcome.usage = chat_usage(payload.get("usage"))
        if "model" not in payload or payload.get("object") != "response":
            return body  # an error body, or something else: as the upstream sent it
        payload["model"] = self.model
        payload.update(self.echo)
        if self.response_id is not None:
            payload["id"] = self.response_id
        out = jsonfast.dumps(payload)
        if self.hold_final:
            self.final, self.held = payload, out
            return b""
        return out
