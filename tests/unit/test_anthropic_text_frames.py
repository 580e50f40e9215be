"""The Anthropic stream converter reads the text deltas of its open text block by their bytes
(anthropic.stream.SSEConverter) and every other frame as an event. Against a reading of every frame as an event, for the
recorded streams in any chunking, LF or CRLF, and for hostile texts and near-miss frames, the
chunks must be the same: the byte reading may only ever be a shortcut, never a misreading."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.anthropic.stream import EventConverter, SSEConverter
from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.sse import SSEDecoder

from ..spec import validate
from .pieces import cuts

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
STREAMS = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("*.sse"))}


def by_events(data: bytes) -> list:
    """Every frame parsed as JSON and handed to the event machine: the reference reading."""
    conv = EventConverter("ch", "m")
    decoder = SSEDecoder()
    out = []
    for ev in decoder.feed(data) + decoder.close():
        if ev.data:
            out += conv.event(json.loads(ev.data))
    return chunks.expand(out + conv.close()), conv


def by_bytes(pieces: list[bytes], like: EventConverter) -> list:
    conv = SSEConverter("ch", "m")
    conv.events.id, conv.events.created = like.id, like.created  # the ids each converter draws
    out = []
    for p in pieces:
        out += conv.feed(p)
    return chunks.expand(out + conv.close())


def same(a: list, b: list) -> None:
    assert [x if isinstance(x, dict) else repr(x) for x in a] == [x if isinstance(x, dict) else repr(x) for x in b]


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("crlf", [False, True])
@settings(max_examples=30, deadline=None)
@given(at=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_recorded_streams_in_any_chunking(name: str, crlf: bool, at: list[int]) -> None:
    data = STREAMS[name].replace(b"\n", b"\r\n") if crlf else STREAMS[name]
    expected, conv = by_events(data)
    same(by_bytes(cuts(data, at), conv), expected)


def stream(delta_frames: list[bytes]) -> bytes:
    head = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n')
    tail = (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n'
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return head + b"".join(f + b"\n\n" for f in delta_frames) + tail


def delta_frame(text: str, *, ensure_ascii: bool) -> bytes:
    literal = json.dumps(text, ensure_ascii=ensure_ascii).encode()
    return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":' \
        + literal + b"}}"


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(), min_size=1, max_size=6), ascii_only=st.booleans())
def test_any_text_reads_as_the_event_says(texts: list[str], ascii_only: bool) -> None:
    """Quotes, backslashes, `}}`, control characters, astral characters: the text is the JSON
    string's value, exactly."""
    data = stream([delta_frame(t, ensure_ascii=ascii_only) for t in texts])
    expected, conv = by_events(data)
    got = by_bytes([data], conv)
    same(got, expected)
    for c in got:
        validate("CreateChatCompletionStreamResponse", c)
    assert "".join(c["choices"][0]["delta"]["content"] for c in expected[1:-2]) == "".join(texts)


NEAR_MISSES = [
    # another field after the text: read as an event, the field is not folded into the text
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","b":"c"}}',
    # a text that is not a string
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}',
    # two strings glued where the text should be
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}},"x":{"y":"b"}}',
    # the text's key in another place
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"text":"a","type":"text_delta"}}',
    # data split over two lines (joined with a newline by the SSE rules)
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,\ndata: "delta":{"type":"text_delta","text":"a"}}',
    # a line break between the text and the closing braces (the text is still one JSON string)
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"\n}}',
    # an index JSON does not allow, and one past what the byte reading takes
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":00,"delta":{"type":"text_delta","text":"a"}}',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1000000000000000000,"delta":{"type":"text_delta","text":"a"}}',
    # spaced JSON, as another server might write it
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}',
]


@pytest.mark.parametrize("frame", NEAR_MISSES)
def test_near_misses_are_read_as_events(frame: bytes) -> None:
    data = stream([frame])
    try:
        expected, conv = by_events(data)
    except ValueError:  # the glued frame is not JSON: both readings must refuse it
        with pytest.raises(ValueError):
            by_bytes([data], EventConverter("ch", "m"))
        return
    same(by_bytes([data], conv), expected)


def test_a_text_delta_before_its_block_is_refused_both_ways() -> None:
    frame = delta_frame("a", ensure_ascii=True).replace(b'"index":0', b'"index":3')
    with pytest.raises(ValueError, match="before its content_block_start"):
        by_events(stream([frame]))
    with pytest.raises(ValueError, match="before its content_block_start"):
        by_bytes([stream([frame])], EventConverter("ch", "m"))


def test_a_text_block_index_started_again_as_another_block_ends_the_byte_reading() -> None:
    """The text head is the open text block's: when its index starts a block of another kind,
    a text delta for that index is that block's (a server tool's: not part of the answer)."""
    frames = [delta_frame("a", ensure_ascii=True),
              b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              b'"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}',
              delta_frame("LEAK", ensure_ascii=True)]
    expected, conv = by_events(stream(frames))
    got = by_bytes([stream(frames)], conv)
    same(got, expected)
    assert [c["choices"][0]["delta"] for c in got[1:-2]] == [{"content": "a"}]


@pytest.mark.parametrize("delta", [
    b'{"type":"thinking_delta","thinking":"a"}',
    b'{"type":"input_json_delta","partial_json":"{"}',
    b'{"type":"text_delta","text":["a"]}',
])
def test_a_delta_that_does_not_fit_its_block_is_an_upstream_error(delta: bytes) -> None:
    """A thinking or tool delta sent into a text block, or a text that is not a string: the
    stream is refused (the relay answers 502), never a crash or a wrong-typed chunk."""
    frame = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":' + delta + b"}"
    with pytest.raises(ValueError):
        by_bytes([stream([frame])], EventConverter("ch", "m"))


def test_deltas_of_server_tool_blocks_are_not_part_of_the_chat_answer() -> None:
    """Anthropic streams server tool use (web search, code execution) as blocks of their own,
    with input_json_delta: a chat answer has no place for them, and they end nothing."""
    frames = [b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
              b'"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}',
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
              b'"delta":{"type":"input_json_delta","partial_json":"{\\"query\\":"}}',
              delta_frame("x", ensure_ascii=True).replace(b'"index":0', b'"index":1'),
              delta_frame("after", ensure_ascii=True)]
    expected, conv = by_events(stream(frames))
    got = by_bytes([stream(frames)], conv)
    same(got, expected)
    assert [c["choices"][0]["delta"] for c in got[1:-2]] == [{"content": "after"}]


@pytest.mark.parametrize("payload", [b"[1]", b'"message_stop"', b"7", b"null"])
def test_an_event_that_is_not_an_object_is_an_upstream_error(payload: bytes) -> None:
    """ValueError is what the HTTP adaptor answers as a 502; anything else would be a 500."""
    with pytest.raises(ValueError, match="not a JSON object"):
        by_bytes([stream([b"event: content_block_delta\ndata: " + payload])], EventConverter("ch", "m"))


def test_a_last_event_without_its_blank_line_is_checked_too() -> None:
    conv = SSEConverter("ch", "m")
    conv.feed(b"event: message_stop\ndata: [1]")
    with pytest.raises(ValueError, match="not a JSON object"):
        conv.close()
