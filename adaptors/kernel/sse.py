"""Sans-IO Server-Sent Events: a decoder fed arbitrary byte chunks, and encoders.

The decoder follows the WHATWG event-stream rules that matter for LLM APIs: lines end in
\\n, \\r\\n or \\r; `data` lines of one event are joined with \\n; comments (`:`) are skipped;
an event is dispatched on a blank line. Bytes are only decoded once a full line is present,
so a multi-byte UTF-8 character split across chunks is never damaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEDecoder:
    """Whole events are cut at their blank line with `bytes.split` and read at once (one
    decode per event, not per line); an unfinished event waits in the buffer as bytes."""

    __slots__ = ("_buf", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return [ev for frame in self.frames(chunk) if (ev := event(frame)) is not None]

    def frames(self, chunk: bytes) -> list[bytes]:
        """The whole frames `chunk` completes, LF line ends, without their blank line: for a
        reader that recognises its common frames by their bytes and hands the rest to `event`."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            self._pending_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        frames = buf.split(b"\n\n")
        self._buf = frames.pop()  # not ended yet
        return frames

    def close(self) -> list[SSEEvent]:
        """End of stream: a final event without its blank line still counts."""
        rest, self._buf = self._buf, b""
        ev = event(rest, need_data=True) if rest else None
        return [ev] if ev is not None else []


def event(frame: bytes, need_data: bool = False) -> SSEEvent | None:
    """One event from its lines (a frame of `SSEDecoder.frames`: no blank line inside but
    perhaps a leading one); None for a frame of comments only (or, with `need_data`, one
    without a data line)."""
    # The two shapes LLM APIs send, read without a line loop: `data: X` and `event: E\ndata: X`.
    if frame[:6] == b"data: " and b"\n" not in frame:
        return SSEEvent(None, frame[6:].decode("utf-8", errors="replace"))
    if frame[:7] == b"event: " and (nl := frame.find(b"\n")) > 0 and frame[nl + 1:nl + 7] == b"data: " \
            and frame.find(b"\n", nl + 1) < 0:
        return SSEEvent(frame[7:nl].decode("utf-8", errors="replace"), frame[nl + 7:].decode("utf-8", errors="replace"))
    event: str | None = None
    data: list[str] = []
    for line in frame.decode("utf-8", errors="replace").split("\n"):
        if not line or line[0] == ":":
            continue
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if not data and (need_data or not event):
        return None
    return SSEEvent(event, "\n".join(data))


class DataDecoder:
    """The `data` of each event, as bytes, for readers that need nothing else (chat chunks):
    the same rules as SSEDecoder, but a frame is cut at its blank line with `bytes.find` and
    a plain `data: ...` frame is not read line by line. A stream with CR line ends is handed
    to an SSEDecoder from the first CR on (the frames before it are complete)."""

    __slots__ = ("_buf", "_sse")

    def __init__(self) -> None:
        self._buf = b""
        self._sse: SSEDecoder | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._sse is not None:
            return [ev.data.encode() for ev in self._sse.feed(chunk)]
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            self._sse, self._buf = SSEDecoder(), b""
            return [ev.data.encode() for ev in self._sse.feed(buf)]
        frames = buf.split(b"\n\n")
        self._buf = frames.pop()  # not ended yet
        out = [f[6:] if f[:6] == b"data: " and b"\n" not in f else _frame_data(f) for f in frames]
        if None in out:  # frames of comments only
            return [d for d in out if d is not None]
        return cast(list[bytes], out)

    def close(self) -> list[bytes]:
        """End of stream: a final event without its blank line still counts."""
        if self._sse is not None:
            return [ev.data.encode() for ev in self._sse.close()]
        rest, self._buf = self._buf, b""
        data = _frame_data(rest)
        return [data] if data is not None else []


def _frame_data(frame: bytes) -> bytes | None:
    """The joined `data` lines of one frame (no CR, no blank line inside); None if it has none."""
    data: bytes | None = None
    for line in frame.split(b"\n"):
        if not line.startswith(b"data"):
            continue  # a comment, another field, or an empty line
        name, _, value = line.partition(b":")
        if name != b"data":
            continue
        if value.startswith(b" "):
            value = value[1:]
        data = value if data is None else data + b"\n" + value
    return data


def encode_data(payload: bytes) -> bytes:
    """A chat-completions style frame: `data: <json>` and a blank line."""
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, payload: bytes) -> bytes:
    """A Responses style frame: `event: <type>`, `data: <json>` and a blank line."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"
