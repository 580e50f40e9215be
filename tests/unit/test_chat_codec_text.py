"""The chat codec, for a stream that feeds a bridge, gives text alone that continues its
chunk as a str item (openai.codec.ChatStreamConverter, for_bridge). Its stream only feeds the Responses and Messages bridges,
so for the recorded chat streams in any chunking, and for chunks that only look like text
continuations, the bridges must give the same events as for every chunk parsed whole."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import DataDecoder
from relay_adaptors.messages import MessagesStream
from relay_adaptors.openai.codec import ChatStreamConverter, checked_chunk
from relay_adaptors.responses import Envelope, ResponsesStream
from relay_adaptors.responses.tools import ToolNames

from .pieces import cuts

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
STREAMS = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("chat-*.sse"))}
ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "temperature": None, "top_p": None, "metadata": {}}


def whole(data: bytes) -> list:
    """Every frame parsed and checked as a chunk: the reference reading."""
    decoder = DataDecoder()
    out: list = []
    for payload in decoder.feed(data) + decoder.close():
        if payload and payload != b"[DONE]":
            obj = jsonfast.loads(payload)
            out.append(RelayError(502, "e") if "error" in obj else checked_chunk(obj))
    return out


def by_codec(pieces: list[bytes]) -> list:
    conv = ChatStreamConverter("ch", for_bridge=True)
    return [item for p in pieces for item in conv.feed(p)] + conv.close()


def bridged(items: list) -> list:
    """The events of both bridges, up to the first error item."""
    counter = itertools.count(1)
    responses = ResponsesStream(Envelope("m", ECHO, response_id="resp_1", clock=lambda: 1000), ToolNames(),
                                make_id=lambda prefix: f"{prefix}{next(counter)}")
    messages = MessagesStream("m", [], make_id=lambda prefix: prefix + "1")
    out = []
    for bridge in (responses, messages):
        events = bridge.start()
        for item in items:
            if isinstance(item, RelayError):
                break
            events += bridge.feed(item)
        out.append(events + bridge.finish())
    return out


@pytest.mark.parametrize("name", sorted(STREAMS))
@settings(max_examples=30, deadline=None)
@given(at=st.lists(st.integers(min_value=0, max_value=6000), max_size=8))
def test_recorded_streams_bridge_the_same_in_any_chunking(name: str, at: list[int]) -> None:
    data = STREAMS[name]
    items = by_codec(cuts(data, at))
    assert any(isinstance(i, str) for i in items) or "text" not in name
    assert bridged(items) == bridged(whole(data))


BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "up"}
FIRST = {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}


def text(content: str, **changes) -> dict:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": None}
    return {**BASE, "choices": [{**choice, **changes.pop("choice", {})}], **changes}


LOOKALIKES = [
    text("a", id="c2"), text("a", model="other"), text("a", created=6),  # not a continuation of the chunk before
    text("a", choice={"finish_reason": "stop"}), text("a", choice={"index": 1}),
    text("a", usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    text("a", choice={"logprobs": {"content": []}}),
    {**BASE, "choices": [{"index": 0, "delta": {"content": "a", "refusal": "no"}, "finish_reason": None}]},
    {**BASE, "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": None}]},
    {**BASE, "choices": [text("a")["choices"][0], {"index": 1, "delta": {"content": "b"}, "finish_reason": None}]},
    text(""),
    text("a", choice={"index": False}), text("a", choice={"index": 0.0}), text("a", choice={"index": None}),
]


@pytest.mark.parametrize("chunk", LOOKALIKES)
def test_chunks_that_only_look_like_text_continuations_bridge_as_parsed(chunk: dict) -> None:
    frames = [FIRST, text("x"), chunk, text("y"), {**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    data = b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + b"data: [DONE]\n\n"
    try:
        whole(data)
    except ValueError:  # a chunk the checks refuse (an index that is no integer): refused both ways
        with pytest.raises(ValueError):
            by_codec([data])
        return
    items = by_codec([data])
    assert "x" in items and "a" not in items  # the lookalike stays a chunk
    assert bridged(items) == bridged(whole(data))


def test_without_for_bridge_every_chunk_stays_whole() -> None:
    """The chat tap's frame-by-frame reading, which writes to chat clients."""
    conv = ChatStreamConverter("ch")
    items = conv.feed(STREAMS["chat-text"]) + conv.close()
    assert items == whole(STREAMS["chat-text"])


# Mistral streams thinking (and references) as content parts; the bridges carry text only.
PARTS = {**BASE, "choices": [{"index": 0, "delta": {"content": [{"type": "thinking", "thinking": [
    {"type": "text", "text": "hm"}]}]}, "finish_reason": None}]}


@pytest.mark.parametrize("for_bridge", [False, True])
def test_content_parts_are_not_refused(for_bridge: bool) -> None:
    frames = [FIRST, PARTS, text("x"), {**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    data = b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + b"data: [DONE]\n\n"
    conv = ChatStreamConverter("ch", for_bridge=for_bridge)
    items = conv.feed(data.replace(b"\n", b"\r\n")) + conv.close()  # CR line ends: the tap's fallback reads them
    assert PARTS in items and not any(isinstance(i, RelayError) for i in items)
    responses, messages = bridged(items)
    assert responses[-1]["response"]["output"][0]["content"][0]["text"] == "x"
    assert messages[-1]["type"] == "message_stop"
