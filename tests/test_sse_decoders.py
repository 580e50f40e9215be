"""The fast SSE readers (whole frames cut with bytes.find) against a line-by-line reference
written from the WHATWG rules: same events for any bytes and any chunking."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.sse_scan import EventScanner, FrameSplitter, cut_frames, event_name
from relay_adaptors.kernel.sse import DataDecoder, SSEDecoder, SSEEvent


def reference(data: bytes) -> list[SSEEvent]:
    """The spec, one line at a time: CR, LF and CRLF end lines; a blank line dispatches."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    tail = lines.pop()  # not ended: still a line at the end of the stream
    out: list[SSEEvent] = []
    event: str | None = None
    buf: list[str] = []
    for line in [*lines, *([tail] if tail else [])]:
        if not line:
            if buf or event:
                out.append(SSEEvent(event, "\n".join(buf)))
            event, buf = None, []
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        value = value[1:] if sep and value.startswith(" ") else value
        if name == "data":
            buf.append(value)
        elif name == "event":
            event = value
    if buf:
        out.append(SSEEvent(event, "\n".join(buf)))
    return out


PIECES = [b"data: ", b"data:", b"data", b"event: ", b"event:x", b": c", b"id: 1", b"{\"a\":1}", b"[DONE]", b"caf\xc3\xa9",
          b"\xe2\x82", b" ", b"x", b"\n", b"\n\n", b"\r", b"\r\n", b"\r\n\r\n"]
streams = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=8)


def chunked(data: bytes, points: list[int]) -> list[bytes]:
    at = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(streams, cuts)
def test_sse_decoder_matches_the_line_by_line_reference(data, points):
    dec = SSEDecoder()
    got = [ev for c in chunked(data, points) for ev in dec.feed(c)] + dec.close()
    assert got == reference(data)


@settings(max_examples=400, deadline=None)
@given(streams, cuts)
def test_data_decoder_gives_the_data_of_every_event(data, points):
    """Undecoded bytes (the JSON parser reads them); events without data are of no use to it."""
    dec = DataDecoder()
    got = [d for c in chunked(data, points) for d in dec.feed(c)] + dec.close()
    assert [d.decode("utf-8", errors="replace") for d in got if d] == [ev.data for ev in reference(data) if ev.data]


@settings(max_examples=400, deadline=None)
@given(streams, cuts)
def test_frame_splitter_keeps_every_byte_and_cuts_at_blank_lines(data, points):
    split = FrameSplitter()
    frames = [f for c in chunked(data, points) for f in split.push(c)]
    assert b"".join(frames) + split.flush() == data
    for f in frames:
        assert f.endswith((b"\n\n", b"\r\n\r\n"))
        body = f[:-4] if f.endswith(b"\r\n\r\n") else f[:-2]
        assert b"\n\n" not in body and b"\r\n\r\n" not in body


WATCHED = (b"x", b"response.completed", b"message_start")
COUNTED = (b"d",)
# Frames as upstreams write them (at most one event line each), LF or CRLF throughout, the
# last one possibly unfinished.
_frame = st.tuples(
    st.sampled_from([b"", b"event: x\n", b"event: d\n", b"event: message_start\n", b"event:x\n", b"event: xy\n", b"id: 1\nevent: x\n"]),
    st.sampled_from([b"", b"data: {}\n", b"data: event: x\n", b": c\n", b"data: a\ndata: b\n"]),
).map(lambda t: t[0] + t[1] + b"\n")
event_streams = st.tuples(st.lists(_frame, max_size=30), st.sampled_from([b"", b"event: x", b"data: {"]), st.booleans()).map(
    lambda t: (b"".join(t[0]) + t[1]).replace(b"\n", b"\r\n") if t[2] else b"".join(t[0]) + t[1])


@settings(max_examples=400, deadline=None)
@given(event_streams, cuts)
def test_event_scanner_finds_the_frames_a_frame_by_frame_reading_finds(data, points):
    """Whole frames only, every byte kept, and the watched frames (and the count of counted
    ones) exactly as reading each frame's event line would give them."""
    scanner = EventScanner(WATCHED, COUNTED)
    relayed, found, counted = b"", [], 0
    for c in chunked(data, points):
        scan = scanner.push(c)
        found += [(len(relayed) + s, len(relayed) + e, name) for s, e, name in scan.hits]
        counted += scan.counted
        relayed += scan.whole
    assert relayed + scanner.flush() == data
    assert not relayed or relayed.endswith((b"\n\n", b"\r\n\r\n"))  # only whole frames go out
    frames = [f for f in cut_frames(relayed)[0] if f.strip(b"\r\n")]
    assert [name for _, _, name in found] == [event_name(f) for f in frames if event_name(f) in WATCHED]
    for start, end, name in found:  # each hit is one whole frame of that event
        frame = relayed[start:end]
        assert event_name(frame) == name and frame.endswith((b"\n\n", b"\r\n\r\n"))
        assert cut_frames(frame.lstrip(b"\r\n"))[0] == [frame.lstrip(b"\r\n")]
    assert counted == sum(1 for f in frames if event_name(f) in COUNTED)
