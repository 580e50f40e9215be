"""Reading relayed SSE bytes without visiting every frame (sans-IO).

A passthrough relays the upstream's frames as they came and reads only a few of them: the
ones that carry usage, the response object or an error. `EventScanner` cuts a read at its
last whole frame and finds the frames to read by bytes that occur only in them, one search
of the read per marker, so the dozens of delta frames in between cost no Python work at
all; deltas are only counted (one `bytes.count`). Reads with CR line ends take the
frame-by-frame path, which finds the same frames.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def cut_frames(buf: bytes) -> tuple[list[bytes], int]:
    """The whole frames at the start of `buf` (each up to and including its blank line) and
    where the rest begins."""
    frames: list[bytes] = []
    start = 0
    if b"\r" not in buf:  # the usual case: one search per frame, never past the next end
        while (end := buf.find(b"\n\n", start)) >= 0:
            frames.append(buf[start:end + 2])
            start = end + 2
        return frames, start
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
    return frames, start


def event_name(frame: bytes) -> bytes:
    """The frame's `event:` name (upstreams put that line first), without reading the rest."""
    if frame.startswith(b"event:"):
        end = frame.find(b"\n")
        return frame[6:end if end >= 0 else None].strip()
    for line in frame.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip()
    return b""


def frame_data(frame: bytes) -> bytes:
    """The frame's `data:` lines, joined as the SSE rules say."""
    if frame.startswith(b"data: ") and frame.count(b"\n") == 2 and frame.endswith(b"\n\n"):
        return frame[6:-2]  # the usual single data line
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in frame.splitlines() if line.startswith(b"data:"))


@dataclass(slots=True)
class Scan:
    whole: bytes  # the whole frames of this read, as they came
    hits: list[tuple[int, int, bytes]]  # (start, end, event name) of each frame holding a marker, in order
    counted: int  # occurrences of the counted bytes


class EventScanner:
    """`markers`: bytes that occur only in the frames to read (a few per stream); `counted`:
    bytes counted per read (one per delta). Each is one C-level search of the read."""

    __slots__ = ("buf", "markers", "counted")

    def __init__(self, markers: Iterable[bytes], counted: bytes | None = None):
        self.buf = b""
        self.markers = tuple(markers)
        self.counted = counted

    def push(self, data: bytes) -> Scan:
        buf = self.buf + data if self.buf else data
        if b"\r" in buf:
            return self._frame_by_frame(buf)
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.buf = buf
            return Scan(b"", [], 0)
        whole, self.buf = buf[:cut + 2], buf[cut + 2:]
        hits: list[tuple[int, int, bytes]] = []
        for marker in self.markers:
            at = whole.find(marker)
            while at >= 0:
                start = whole.rfind(b"\n\n", 0, at)
                start = start + 2 if start >= 0 else 0
                end = whole.find(b"\n\n", at) + 2
                hits.append((start, end, event_name(whole[start:end])))
                at = whole.find(marker, end)
        if len(hits) > 1:  # in stream order; a frame with two markers is read once
            hits = sorted({h[0]: h for h in hits}.values())
        return Scan(whole, hits, whole.count(self.counted) if self.counted else 0)

    def _frame_by_frame(self, buf: bytes) -> Scan:
        frames, rest = cut_frames(buf)
        self.buf = buf[rest:]
        hits: list[tuple[int, int, bytes]] = []
        at = 0
        for frame in frames:
            if any(m in frame.replace(b"\r\n", b"\n") for m in self.markers):
                hits.append((at, at + len(frame), event_name(frame)))
            at += len(frame)
        whole = buf[:rest]
        return Scan(whole, hits, whole.replace(b"\r\n", b"\n").count(self.counted) if self.counted else 0)

    def flush(self) -> bytes:
        """What is left of a frame the stream never finished."""
        rest, self.buf = self.buf, b""
        return rest
