"""The non-stream Response is built directly from the completion; it must be exactly the
Response the stream machine ends with when the completion is replayed through it as the
chunks a stream of it would carry (completion_chunks), so a client sees the same answer
streamed or not. Ids come from one counter on both sides, so their order is compared too."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.responses import Envelope, ResponsesStream, completion_to_response
from relay_adaptors.responses.complete import completion_chunks
from relay_adaptors.responses.tools import ToolNames

from ..spec import validate

FLAT = ToolNames().flat("ns", "g")
ECHO = {"instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "temperature": None, "top_p": None, "metadata": {}}


def counter():
    n = itertools.count()
    return lambda prefix: f"{prefix}{next(n)}"


def envelope() -> Envelope:
    return Envelope("m", ECHO, response_id="resp_1", clock=lambda: 1000)


def replayed(completion: dict, names: ToolNames) -> dict:
    machine = ResponsesStream(envelope(), names, counter())
    machine.start()
    for chunk in completion_chunks(completion):
        machine.feed(chunk)
    machine.finish()
    assert machine.response is not None
    return machine.response


# Values as upstreams send them, wrong types included: what a field is not, it must not be on either side.
field = st.one_of(st.none(), st.text(max_size=5), st.sampled_from(["", "x"]), st.integers(), st.lists(st.integers(), max_size=1))
calls = st.lists(st.fixed_dictionaries({"id": st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=4)),
                                        "function": st.fixed_dictionaries({"name": st.one_of(st.none(), st.sampled_from(["f", FLAT, ""])),
                                                                           "arguments": field})}), max_size=3)
messages = st.fixed_dictionaries({"tool_calls": st.one_of(calls, calls, st.none())},  # a call beside every other field, often
                                 optional={"content": field, "refusal": field, "reasoning_content": field, "reasoning": field,
                                           "reasoning_signature": field})
choice = st.fixed_dictionaries({"message": messages,
                                "finish_reason": st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"])})
# Half the time one full choice; else the shapes with nothing in them.
choices = st.one_of(st.lists(choice, min_size=1, max_size=1), st.sampled_from([[], [{}], [{"message": None}]]))
completions = st.fixed_dictionaries({"choices": choices}, optional={"usage": st.one_of(st.none(), st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 99), "completion_tokens": st.integers(0, 99)}))})


@settings(max_examples=400, deadline=None)
@given(completion=completions, namespaced=st.booleans())
def test_the_built_response_is_the_replayed_one(completion, namespaced):
    names = ToolNames()
    if namespaced:
        names.flat("ns", "g")  # so a call to that flat name answers with its namespace
    built, expected = completion_to_response(completion, envelope(), names, counter()), replayed(completion, names)
    assert built == expected
    assert list(built) == list(expected)  # the same key order, so the same bytes


def test_the_built_response_is_valid_against_the_spec():
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {
        "reasoning_content": "think", "reasoning_signature": "sig", "content": "hi", "refusal": "no",
        "tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": "{}"}}, {"function": {"name": "g"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    built = completion_to_response(completion, envelope(), ToolNames(), counter())
    assert [i["type"] for i in built["output"]] == ["reasoning", "message", "function_call", "function_call"]
    validate("Response", built)
