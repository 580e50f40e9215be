"""An upstream's stream events are untrusted: whatever JSON an Anthropic, Responses or chat
stream carries, with fields of any type in any order of events, the converter either gives
chunks that the readers after it take (valid chat chunks; valid Responses and Messages events
out of the bridges) or refuses the stream with a ValueError (answered as a 502) or an error
item. Never another exception, which would cut the client's connection."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_adaptors.anthropic.stream import SSEConverter
from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.messages import MessagesStream
from relay_adaptors.openai.codec import ChatStreamConverter
from relay_adaptors.openai.responses_api import ResponsesSSEConverter
from relay_adaptors.responses import Envelope, ResponsesStream
from relay_adaptors.responses.tools import ToolNames

from ..spec import validate, validate_message_event, validate_response_event

KEYS = ["type", "index", "delta", "text", "content_block", "message", "usage", "id", "name", "output_index",
        "content_index", "item", "response", "arguments", "partial_json", "thinking", "signature", "summary_index",
        "error", "status", "content", "output", "call_id", "stop_reason", "input_tokens", "output_tokens"]
WORDS = ["text", "tool_use", "thinking", "text_delta", "thinking_delta", "signature_delta", "input_json_delta",
         "function_call", "message", "output_text", "completed", "end_turn"]
leaf = st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=3) | st.sampled_from(WORDS)
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                     max_leaves=8)

ANTHROPIC = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
             "message_stop", "error", "ping"]
RESPONSES = ["response.created", "response.output_item.added", "response.output_text.delta", "response.output_text.done",
             "response.refusal.delta", "response.function_call_arguments.delta", "response.function_call_arguments.done",
             "response.output_item.done", "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
             "response.completed", "response.incomplete", "response.failed", "error"]


def events(types: list[str]) -> st.SearchStrategy[list[tuple[str, dict]]]:
    return st.lists(st.tuples(st.sampled_from(types), st.dictionaries(st.sampled_from(KEYS[1:]), value, max_size=4)), max_size=6)


@pytest.mark.parametrize("converter, types", [(SSEConverter, ANTHROPIC), (ResponsesSSEConverter, RESPONSES)],
                         ids=["anthropic", "responses"])
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_event_is_read_or_refused_never_a_crash(converter, types, data):
    stream = data.draw(events(types))
    # compact JSON, as Anthropic and OpenAI write it, reaches the converters' byte readings too
    separators = (",", ":") if data.draw(st.booleans()) else (", ", ": ")
    conv = converter("ch", "m")
    body = b"".join(f"event: {kind}\ndata: {json.dumps({'type': kind, **fields}, separators=separators)}\n\n".encode()
                    for kind, fields in stream)
    try:
        items = conv.feed(body) + conv.close()
    except ValueError:
        return  # refused: the relay answers 502
    answer = [i for i in items if not isinstance(i, RelayError)]
    if answer and isinstance(answer[0], str):
        answer.insert(0, chunks.chunk("c", "m", 0, {}))  # text before any chunk: judge the text itself
    for chunk in chunks.expand(answer):
        validate("CreateChatCompletionStreamResponse", chunk)


CHUNK_KEYS = ["index", "delta", "content", "role", "reasoning_content", "reasoning", "refusal", "tool_calls", "function",
              "name", "arguments", "id", "type", "finish_reason", "usage", "prompt_tokens", "completion_tokens",
              "prompt_tokens_details", "cached_tokens"]
chunk_leaf = st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=3) | st.sampled_from(["assistant", "function", "stop"])
chunk_value = st.recursive(chunk_leaf, lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.sampled_from(CHUNK_KEYS), inner, max_size=4), max_leaves=8)
ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "temperature": None, "top_p": None, "metadata": {}}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(objs=st.lists(st.dictionaries(st.sampled_from(["choices", "usage", "id"]), chunk_value, max_size=3), max_size=5))
def test_any_chat_chunk_is_bridged_or_refused_never_a_crash(objs):
    """A chat upstream's chunks go to the Responses and Messages bridges as they are parsed."""
    conv = ChatStreamConverter("ch", for_bridge=True)
    body = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs) + b"data: [DONE]\n\n"
    try:
        items = [i for i in conv.feed(body) + conv.close() if not isinstance(i, RelayError)]
    except ValueError:
        return
    bridges = [(ResponsesStream(Envelope("m", ECHO, "resp_1"), ToolNames()), validate_response_event),
               (MessagesStream("m", []), validate_message_event)]
    for bridge, valid in bridges:
        out = bridge.start()
        for item in items:
            out += bridge.feed(item)
        for event in out + bridge.finish():
            valid(event)
