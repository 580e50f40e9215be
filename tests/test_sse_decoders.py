"""The fast SSE readers (whole frames cut with bytes.find) against a line-by-line reference
written from the WHATWG rules: same events for any bytes and any chunking."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.sse_scan import EventScanner, cut_frames, event_name
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
def test_cut_frames_keeps_every_byte_and_cuts_at_blank_lines(data, points):
    frames, buf = [], b""
    for c in chunked(data, points):
        got, rest = cut_frames(buf + c)
        frames += got
        buf = (buf + c)[rest:]
    assert b"".join(frames) + buf == data
    for f in frames:
        assert f.endswith((b"\n\n", b"\r\n\r\n"))
        body = f[:-4] if f.endswith(b"\r\n\r\n") else f[:-2]
        assert b"\n\n" not in body and b"\r\n\r\n" not in body


MARKERS = (b"event: x\n", b"mark")
COUNTED = b"d\n"
# Frames as upstreams write them, LF or CRLF throughout, the last one possibly unfinished.
_frame = st.tuples(
    st.sampled_from([b"", b"event: x\n", b"event: d\n", b"event: xy\n", b"id: 1\nevent: x\n"]),
    st.sampled_from([b"", b"data: {}\n", b"data: mark\n", b"data: mark mark\n", b": c\n", b"data: a\ndata: b\n"]),
).map(lambda t: t[0] + t[1] + b"\n")
event_streams = st.tuples(st.lists(_frame, max_size=30), st.sampled_from([b"", b"event: x", b"data: {"]), st.booleans()).map(
    lambda t: (b"".join(t[0]) + t[1]).replace(b"\n", b"\r\n") if t[2] else b"".join(t[0]) + t[1])


@settings(max_examples=400, deadline=None)
@given(event_streams, cuts)
def test_event_scanner_finds_every_frame_holding_a_marker_and_only_those(data, points):
    """Whole frames only, every byte kept, each frame holding a marker found once (with its
    event name), and the counted bytes counted, in any chunking."""
    scanner = EventScanner(MARKERS, COUNTED)
    relayed, found, counted = b"", [], 0
    for c in chunked(data, points):
        scan = scanner.push(c)
        found += [(len(relayed) + s, len(relayed) + e, name) for s, e, name in scan.hits]
        counted += scan.counted
        relayed += scan.whole
    assert relayed + scanner.flush() == data
    assert not relayed or relayed.endswith((b"\n\n", b"\r\n\r\n"))  # only whole frames go out
    frames = [f for f in cut_frames(relayed)[0] if f.strip(b"\r\n")]
    marked = [f for f in frames if any(m in f.replace(b"\r\n", b"\n") for m in MARKERS)]
    assert [relayed[s:e].strip(b"\r\n") for s, e, _ in found] == [f.strip(b"\r\n") for f in marked]
    assert [name for _, _, name in found] == [event_name(f) for f in marked]
    assert counted == sum(f.replace(b"\r\n", b"\n").count(COUNTED) for f in frames)
