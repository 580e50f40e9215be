"""Text alone travels a stream as a str item (base.StreamItem), which stands for the chunk
`chunks.expand` builds for it. Every reader of a stream must give, for a str item, exactly
what it gives for that chunk: the chat writer the same bytes, the bridge machines the same
events, the outcome the same count, the non-stream builder the same answer."""
from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.chat_writer import ChatFrames
from relay.messages_stream import write_messages_stream
from relay.outcome import StreamOutcome
from relay.responses_writer import encoded, write_responses_stream
from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.accumulate import accumulate
from relay_adaptors.messages import MessagesStream
from relay_adaptors.responses import Envelope, ResponsesStream
from relay_adaptors.responses.tools import ToolNames

from ..spec import validate, validate_message_event, validate_response_event

ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "temperature": None, "top_p": None, "metadata": {}}

ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12)
texts = st.lists(st.text(alphabet=st.characters(codec="utf-8")), max_size=6)


def stream(cid: str, created: int, pieces: list[str], mixed: bool) -> list:
    """A stream in the shape converters give: a role chunk, text items (with, when `mixed`, a
    reasoning chunk between them of another id, which the text after it takes), the finish, usage."""
    head = chunks.chunk(cid, "up", created, {"role": "assistant", "content": ""})
    body: list = []
    for i, text in enumerate(pieces):
        if mixed and i == 1:
            body.append(chunks.chunk(cid + "2", "up", created + 1, {"reasoning_content": "hm"}))
        body.append(text)
    return [head, *body, chunks.chunk(cid, "up", created, {}, "stop"),
            chunks.usage_chunk(cid, "up", created, chunks.usage(3, 4))]


def copies(items: list) -> list:
    return [dict(i) if isinstance(i, dict) else i for i in items]  # the writers edit chunks in place


@settings(max_examples=150, deadline=None)
@given(cid=ids, created=st.integers(min_value=0, max_value=2**40), pieces=texts, mixed=st.booleans(),
       include_usage=st.booleans(), split=st.integers(min_value=0, max_value=9))
def test_chat_writer_writes_a_text_item_as_the_bytes_of_its_chunk(cid, created, pieces, mixed, include_usage, split):
    items = stream(cid, created, pieces, mixed)
    as_text, as_chunks = StreamOutcome(), StreamOutcome()
    write_text, write_chunks = ChatFrames(include_usage, as_text, "public"), ChatFrames(include_usage, as_chunks, "public")
    expanded = chunks.expand(copies(items))
    got = write_text(copies(items[:split])) + write_text(copies(items[split:]))  # any batching
    assert got == write_chunks(expanded)
    reasoning = len("hm") if mixed and len(pieces) > 1 else 0
    assert as_text.output_chars == as_chunks.output_chars == sum(map(len, pieces)) + reasoning
    assert as_text.usage == as_chunks.usage
    for frame in got.split(b"\n\n")[:-1]:
        validate("CreateChatCompletionStreamResponse", chunks_json(frame))


def chunks_json(frame: bytes) -> dict:
    assert frame.startswith(b"data: ")
    return json.loads(frame[6:])


def test_a_text_item_first_still_gets_a_whole_chunk():
    """base.StreamItem rules it out; a plugin that breaks the rule still gets valid chunks."""
    out = ChatFrames(False, StreamOutcome(), "public")(["hi"])
    validate("CreateChatCompletionStreamResponse", chunks_json(out.split(b"\n\n")[0]))
    with pytest.raises(ValueError):
        chunks.expand(["hi"])


def responses_machine() -> ResponsesStream:
    counter = itertools.count(1)
    return ResponsesStream(Envelope("m", ECHO, response_id="resp_1", clock=lambda: 1000), ToolNames(),
                           make_id=lambda prefix: f"{prefix}{next(counter)}")


@settings(max_examples=100, deadline=None)
@given(pieces=texts, mixed=st.booleans())
@pytest.mark.parametrize("make, valid", [
    (responses_machine, validate_response_event),
    (lambda: MessagesStream("m", [], make_id=lambda prefix: prefix + "1"), validate_message_event),
], ids=["responses", "messages"])
def test_bridges_give_a_text_item_the_events_of_its_chunk(make, valid, pieces, mixed):
    items = stream("chatcmpl-1", 5, pieces, mixed)
    by_text, by_chunks = make(), make()
    events = [by_text.start(), by_chunks.start()]
    for item in items:
        events[0] += by_text.feed(item)
    for item in chunks.expand(items):
        events[1] += by_chunks.feed(item)
    events[0] += by_text.finish()
    assert events[0] == events[1] + by_chunks.finish()
    for event in events[0]:  # and each is the protocol's own event
        valid(event)


class Collected:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


def check_event_frames(written: bytes, valid) -> None:
    """Each frame is `event: <type>` and its event's JSON, and the event is the protocol's own."""
    for frame in written.split(b"\n\n")[:-1]:
        head, data = frame.split(b"\ndata: ")
        event = json.loads(data)
        assert head == b"event: " + event["type"].encode()
        valid(event)


async def batches(items: list, split: int):
    for batch in (items[:split], items[split:]):
        if batch:
            yield batch


@settings(max_examples=100, deadline=None)
@given(pieces=texts, mixed=st.booleans(), refusal=st.booleans(), split=st.integers(min_value=0, max_value=9))
def test_the_responses_writer_writes_a_text_item_as_the_frame_of_its_event(pieces, mixed, refusal, split):
    """ResponsesStream.text_frame, the writer's short path, writes the bytes the event of its
    chunk encodes to, in any batching, around reasoning and refusal parts."""
    items = stream("chatcmpl-1", 5, pieces, mixed)
    if refusal:
        items.insert(len(items) // 2, chunks.chunk("chatcmpl-1", "up", 5, {"refusal": "no"}))
    machine, reference = responses_machine(), responses_machine()
    sink, outcome = Collected(), StreamOutcome()
    sink.writes += encoded(machine.start())
    asyncio.run(write_responses_stream(sink, batches(items, split), machine, outcome))
    events = reference.start() + [e for item in chunks.expand(items) for e in reference.feed(item)] + reference.finish()
    assert b"".join(sink.writes) == b"".join(encoded(events))
    assert outcome.finished and machine.response == reference.response
    assert outcome.output_chars == sum(map(len, pieces)) + (2 if mixed and len(pieces) > 1 else 0) + (2 if refusal else 0)
    check_event_frames(b"".join(sink.writes), validate_response_event)


@settings(max_examples=100, deadline=None)
@given(pieces=texts, mixed=st.booleans(), tool=st.booleans(), split=st.integers(min_value=0, max_value=9))
def test_the_messages_writer_writes_a_text_item_as_the_frame_of_its_event(pieces, mixed, tool, split):
    """MessagesStream.text_frame, the writer's short path, writes the bytes the event of its
    chunk encodes to, in any batching, around thinking and tool blocks."""
    items = stream("chatcmpl-1", 5, pieces, mixed)
    if tool:
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        items.insert(len(items) // 2, chunks.chunk("chatcmpl-1", "up", 5, {"tool_calls": [call]}))
    make = lambda: MessagesStream("m", [], make_id=lambda prefix: prefix + "1")  # noqa: E731
    machine, reference = make(), make()
    sink, outcome = Collected(), StreamOutcome()
    asyncio.run(write_messages_stream(sink, batches(items, split), machine, outcome, "req_1", "ch"))
    events = reference.start() + [e for item in chunks.expand(items) for e in reference.feed(item)] + reference.finish()
    assert b"".join(sink.writes) == b"".join(encoded(events))
    assert outcome.finished and machine.message == reference.message
    check_event_frames(b"".join(sink.writes), validate_message_event)


@given(pieces=texts, mixed=st.booleans())
def test_a_non_stream_answer_built_from_text_items_is_the_one_built_from_their_chunks(pieces, mixed):
    items = stream("chatcmpl-1", 5, pieces, mixed)
    assert accumulate(items, "m") == accumulate(chunks.expand(items), "m")
    assert accumulate(items, "m")["choices"][0]["message"]["content"] == "".join(pieces)
