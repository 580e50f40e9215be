"""The sans-IO SSE decoder: same events whatever the chunking, UTF-8 safe, spec line endings."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.kernel.sse import SSEDecoder, SSEEvent

from .fakes.base import FIXTURES


def decode_all(chunks: list[bytes]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    for c in chunks:
        out += dec.feed(c)
    return out + dec.close()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_basic_frames_comments_and_multiline_data():
    data = b": ping\n\nevent: a\ndata: 1\ndata: 2\n\ndata:x\n\n"
    assert decode_all([data]) == [SSEEvent("a", "1\n2"), SSEEvent(None, "x")]


def test_crlf_and_cr_line_endings():
    assert decode_all([b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]) == [SSEEvent(None, "a"), SSEEvent(None, "b"), SSEEvent(None, "c")]


def test_crlf_split_between_chunks_is_one_line_end():
    assert decode_all([b"data: a\r", b"\n\r", b"\ndata: b\n\n"]) == [SSEEvent(None, "a"), SSEEvent(None, "b")]


def test_multibyte_character_split_between_chunks():
    data = "data: café ☕ 🎉\n\n".encode()
    cut = data.index("🎉".encode()) + 2
    assert decode_all([data[:cut], data[cut:]]) == [SSEEvent(None, "café ☕ 🎉")]


def test_last_event_without_blank_line_is_kept_on_close():
    assert decode_all([b"data: tail"]) == [SSEEvent(None, "tail")]


FIXTURE_STREAMS = [p.read_bytes() for p in sorted((FIXTURES / "openai").glob("*.sse"))]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FIXTURE_STREAMS), st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_chunking_gives_the_same_events(data, cuts):
    assert decode_all(split_at(data, cuts)) == decode_all([data])
