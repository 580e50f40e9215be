"""The Responses-upstream converter parses a text delta frame from its data line's bytes
(openai.responses_api.stream.ResponsesSSEConverter.feed) and reads every other frame by the
SSE rules. Against a reading of every frame by the SSE rules, for the recorded streams in any
chunking, LF or CRLF, and for frames that only look like text deltas, the items must be the
same: the byte reading may only ever be a shortcut, never a misreading."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import SSEDecoder
from relay_adaptors.openai.responses_api import ResponsesSSEConverter

from .pieces import cuts

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
STREAMS = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("responses-*.sse"))}


def comparable(items: list[Any]) -> list[Any]:
    return [(i.status, i.code, i.message) if isinstance(i, RelayError) else i for i in chunks.expand(items)]


def by_rules(data: bytes, like: ResponsesSSEConverter) -> list[Any]:
    """Every frame decoded by SSEDecoder and handed over as an event: the reference reading."""
    conv = ResponsesSSEConverter("ch", "m")
    conv.events.id, conv.events.created = like.events.id, like.events.created
    decoder = SSEDecoder()
    return comparable(conv._convert(decoder.feed(data) + decoder.close()) + conv.events.close())


def by_bytes(pieces: list[bytes]) -> tuple[list[Any], ResponsesSSEConverter]:
    conv = ResponsesSSEConverter("ch", "m")
    out: list[Any] = []
    for p in pieces:
        out += conv.feed(p)
    return comparable(out + conv.close()), conv


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("crlf", [False, True])
@settings(max_examples=30, deadline=None)
@given(at=st.lists(st.integers(min_value=0, max_value=6000), max_size=8))
def test_recorded_streams_in_any_chunking(name: str, crlf: bool, at: list[int]) -> None:
    data = STREAMS[name].replace(b"\n", b"\r\n") if crlf else STREAMS[name]
    got, conv = by_bytes(cuts(data, at))
    assert got == by_rules(data, conv)


CREATED = b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","model":"m","output":[]}}'
COMPLETED = b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed"}}'
DELTA = b'event: response.output_text.delta\ndata: '

LOOKALIKES = [
    # the event line says text delta, the JSON says otherwise: the JSON's type wins both ways
    DELTA + b'{"type":"response.refusal.delta","output_index":0,"delta":"no"}',
    # no type in the JSON: the event line's type is taken (the SSE reading does that)
    DELTA + b'{"output_index":0,"content_index":0,"delta":"a"}',
    # the data over two lines, joined with a newline by the SSE rules
    DELTA + b'{"type":"response.output_text.delta","output_index":0,\ndata: "delta":"a"}',
    # a continuation line that is no field: JSON would read it as whitespace, the SSE rules end the data
    DELTA + b'{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"x",\n"logprobs":[]}',
    # a comment or another field after the data line
    DELTA + b'{"type":"response.output_text.delta","output_index":0,"delta":"a"}\n: keep',
    DELTA + b'{"type":"response.output_text.delta","output_index":0,"delta":"a"}\nid: 7',
    # bytes that are not UTF-8 (the SSE reading replaces them)
    DELTA + b'{"type":"response.output_text.delta","output_index":0,"delta":"a\xff"}',
    # not an object, not JSON, no output index
    DELTA + b'["response.output_text.delta"]',
    DELTA + b'{"type":"response.output_text.delta",',
    DELTA + b'{"type":"response.output_text.delta","delta":"a"}',
]


@pytest.mark.parametrize("frame", LOOKALIKES)
@pytest.mark.parametrize("first", [False, True], ids=["after-created", "first"])
def test_frames_that_look_like_text_deltas_read_as_the_sse_rules_say(frame: bytes, first: bool) -> None:
    frames = [frame, CREATED, COMPLETED] if first else [CREATED, frame, COMPLETED]
    data = b"".join(f + b"\n\n" for f in frames)
    try:
        got, conv = by_bytes([data])
    except ValueError as e:  # both readings must refuse it, for the same reason
        with pytest.raises(ValueError, match=re.escape(str(e))):
            by_rules(data, ResponsesSSEConverter("ch", "m"))
        return
    assert got == by_rules(data, conv)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(), min_size=1, max_size=6), ascii_only=st.booleans())
def test_any_text_reads_as_the_event_says(texts: list[str], ascii_only: bool) -> None:
    deltas = [DELTA + json.dumps({"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
                                  "delta": t}, ensure_ascii=ascii_only).encode() for t in texts]
    data = b"".join(f + b"\n\n" for f in [CREATED, *deltas, COMPLETED])
    got, conv = by_bytes([data])
    assert got == by_rules(data, conv)
    assert "".join(i["choices"][0]["delta"].get("content", "") for i in got if i["choices"]) == "".join(texts)
