"""Sans-IO Server-Sent Events: a decoder fed arbitrary byte chunks, and encoders.

The decoder follows the WHATWG event-stream rules that matter for LLM APIs: lines end in
\\n, \\r\\n or \\r; `data` lines of one event are joined with \\n; comments (`:`) are skipped;
an event is dispatched on a blank line. Bytes are only decoded once a full line is present,
so a multi-byte UTF-8 character split across chunks is never damaged.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEDecoder:
    __slots__ = ("_buf", "_event", "_data", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        buf = self._buf + chunk
        if b"\r" in buf:
            self._pending_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            ev = self._line(raw.decode("utf-8", errors="replace"))
            if ev is not None:
                events.append(ev)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        events = self.feed(b"\n") if self._buf else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch() if (self._data or self._event) else None
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def _dispatch(self) -> SSEEvent:
        ev = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return ev


def encode_data(payload: bytes) -> bytes:
    """A chat-completions style frame: `data: <json>` and a blank line."""
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, payload: bytes) -> bytes:
    """A Responses style frame: `event: <type>`, `data: <json>` and a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"
