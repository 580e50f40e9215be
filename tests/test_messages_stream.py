"""The chat-chunk -> Messages-events machine, fed recorded chat streams and generated ones."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_adaptors.anthropic.thinking import encode_block
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.messages import MessagesStream, completion_to_message
from relay_adaptors.openai.codec import ChatStreamConverter

from .messages_events import check_error, check_message, check_order, check_stream, final_message

OPENAI = Path(__file__).parent / "fixtures" / "openai"
STREAMS = ["chat-text.sse", "chat-tool.sse", "chat-tools.sse", "chat-reasoning.sse", "chat-length.sse"]


def ids(prefix: str) -> str:
    return prefix + "fixed"


def run(chunks: list[dict[str, Any]], stops: list[str] | None = None) -> tuple[list[dict[str, Any]], MessagesStream]:
    m = MessagesStream("claude-x", stops, ids)
    events = m.start()
    for c in chunks:
        events += m.feed(c)
    return events + m.finish(), m


def from_bytes(pieces: list[bytes]) -> list[dict[str, Any]]:
    """Upstream chat bytes through the openai converter and the machine, piece by piece."""
    conv, m = ChatStreamConverter("up"), MessagesStream("claude-x", None, ids)
    events = m.start()
    for p in pieces:
        for item in conv.feed(p):
            assert not isinstance(item, RelayError)
            events += m.feed(item)
    for item in conv.close():
        events += m.feed(item)
    return events + m.finish()


def chunk(delta: dict[str, Any], finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}]}


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_streams_are_well_formed_messages_streams(name):
    events = from_bytes([(OPENAI / name).read_bytes()])
    check_stream(events)
    full = json.loads((OPENAI / name.replace(".sse", ".json")).read_text())
    streamed = final_message(events)
    answered = completion_to_message(full, "claude-x", make_id=ids)
    check_message(answered)
    # The streamed and the non-streamed answer carry the same content and stop reason.
    assert [b["type"] for b in streamed["content"]] == [b["type"] for b in answered["content"]]
    assert streamed["stop_reason"] == answered["stop_reason"]


@pytest.mark.parametrize("name", STREAMS)
def test_every_byte_boundary_gives_the_same_events(name):
    data = (OPENAI / name).read_bytes()
    whole = from_bytes([data])
    for cut in range(1, len(data)):
        assert from_bytes([data[:cut], data[cut:]]) == whole, f"split at byte {cut}"
    assert from_bytes([data[i:i + 1] for i in range(len(data))]) == whole


def test_stop_reasons_and_usage():
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
    events, m = run([chunk({"content": "hi"}), chunk({}, "length"), {"choices": [], "usage": usage}])
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2]["usage"] == {"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 7,
                                   "output_tokens_details": None, "server_tool_use": None}
    assert run([chunk({"content": "no"}), chunk({}, "content_filter")])[0][-2]["delta"]["stop_reason"] == "refusal"
    assert run([chunk({"content": "a"}), chunk({}, "stop")])[0][-2]["delta"]["stop_reason"] == "end_turn"
    # A server that names the matched stop string (vLLM) gives stop_sequence.
    events, m = run([chunk({"content": "a"}), chunk({}, "stop", stop_reason="END")], stops=["END"])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END", "stop_details": None, "container": None}
    check_message(m.message)


def test_text_block_closes_before_a_tool_block_opens():
    events, _ = run([chunk({"content": "Let me check."}),
                     chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}]}),
                     chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), chunk({}, "tool_calls")])
    check_stream(events)
    assert [e["type"] for e in events[1:4]] == ["content_block_start", "content_block_delta", "content_block_stop"]
    assert final_message(events)["content"][1]["input"] == {"a": 1}  # arguments in the name's chunk are kept


def test_interleaved_parallel_calls_are_separate_blocks_with_all_their_arguments():
    def call(i, args, name=None):
        tc = {"index": i, "function": {"arguments": args}}
        if name:
            tc.update(id=f"call_{i}", function={"name": name, "arguments": args})
        return chunk({"tool_calls": [tc]})
    events, m = run([call(0, "", "a"), call(1, '{"y"', "b"), call(0, '{"x"'), call(1, ": 2}"), call(0, ": 1}"),
                     chunk({}, "tool_calls")])
    check_stream(events)
    content = final_message(events)["content"]
    assert [(b["name"], b["input"]) for b in content] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert m.message["content"] == content


def test_a_delta_for_a_closed_tool_block_is_an_error_not_a_wrong_block():
    m = MessagesStream("x")
    m.start()
    m.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]}))
    m.feed(chunk({"content": "then text"}))
    with pytest.raises(ValueError, match="after its block was closed"):
        m.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}))


def test_thinking_with_a_signature_carried_through_chat():
    sig = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrk+/="
    token = encode_block({"type": "thinking", "thinking": "hmm", "signature": sig})
    redacted = encode_block({"type": "redacted_thinking", "data": "opaque"})
    events, m = run([chunk({"reasoning_content": "hmm"}), chunk({"reasoning_signature": token}),
                     chunk({"reasoning_signature": redacted}), chunk({"content": "ok"}), chunk({}, "stop")])
    check_stream(events)
    assert m.message["content"] == [{"type": "thinking", "thinking": "hmm", "signature": sig},
                                    {"type": "redacted_thinking", "data": "opaque"},
                                    {"type": "text", "text": "ok", "citations": None}]
    check_message(m.message)


def test_failure_is_one_error_event_in_anthropic_shape():
    m = MessagesStream("x")
    events = m.start() + m.feed(chunk({"content": "part"}))
    events += m.fail(RelayError(503, "upstream overloaded", type="api_error"), "req_1")
    check_order(events)
    assert events[-1] == {"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded"}, "request_id": "req_1"}
    check_error(events[-1])
    with pytest.raises(RuntimeError):
        m.feed(chunk({"content": "more"}))


def test_a_completion_with_every_kind_of_content_becomes_a_valid_message():
    completion = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.", "reasoning_content": "think",
        "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "ls", "arguments": '{"p": "."}'}},
                       {"id": "call_10", "type": "function", "function": {"name": "bad", "arguments": "not json"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    msg = completion_to_message(completion, "claude-x", make_id=ids)
    check_message(msg)
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg["content"][2]["input"] == {"p": "."} and msg["content"][3]["input"] == {"arguments": "not json"}
    assert msg["stop_reason"] == "tool_use" and msg["usage"]["input_tokens"] == 5


# --- any valid chat stream -----------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=6)


@st.composite
def chat_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, str]], dict[int, str]]:
    """(chunks, the text/reasoning runs in order, tool index -> full arguments): free text and
    reasoning first, then tool calls whose argument deltas interleave arbitrarily."""
    chunks: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
    runs: list[tuple[str, str]] = []
    for kind, text in draw(st.lists(st.tuples(st.sampled_from(["content", "reasoning_content"]), TEXT), max_size=8)):
        chunks.append(chunk({kind: text}))
        runs.append((kind, text))
    n_tools = draw(st.integers(0, 3))
    args = {i: json.dumps({"k": draw(st.text(max_size=8)), "n": i}) for i in range(n_tools)}
    pending = {i: [args[i][a:b] for a, b in zip([0, *cuts], [*cuts, len(args[i])], strict=True)]
               for i in args for cuts in [sorted(set(draw(st.lists(st.integers(1, len(args[i]) - 1), max_size=4))))]}
    started: set[int] = set()
    while any(pending.values()):
        i = draw(st.sampled_from([k for k, v in pending.items() if v]))
        if i not in started and i != min(set(args) - started):
            i = min(set(args) - started)  # calls start in index order, as chat streams number them
        piece = pending[i].pop(0)
        tc: dict[str, Any] = {"index": i, "function": {"arguments": piece}}
        if i not in started:
            started.add(i)
            if draw(st.booleans()):  # the name in the first delta, as OpenAI sends it
                tc.update(id=f"call_{i}", type="function", function={"name": f"tool_{i}", "arguments": piece})
            else:  # the id first, the name in the next delta, as some servers do
                chunks.append(chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function", "function": {"arguments": ""}}]}))
                tc["function"]["name"] = f"tool_{i}"
        chunks.append(chunk({"tool_calls": [tc]}))
    chunks.append(chunk({}, draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))))
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    return chunks, runs, args


def merged(runs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for kind, text in runs:
        kind = "text" if kind == "content" else "thinking"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


@settings(max_examples=200, deadline=None)
@given(chat_streams())
def test_any_valid_chat_stream_gives_a_well_formed_messages_stream(case):
    chunks, runs, args = case
    events, m = run(chunks)
    check_order(events)
    msg = final_message(events)
    blocks = msg["content"]
    texts = [(b["type"], b.get("text", b.get("thinking"))) for b in blocks if b["type"] != "tool_use"]
    assert texts == merged(runs)
    assert {int(b["name"].removeprefix("tool_")): b["input"] for b in blocks if b["type"] == "tool_use"} == \
        {i: json.loads(a) for i, a in args.items()}
    assert m.message["content"] == blocks and msg["stop_reason"] == m.message["stop_reason"]


def test_text_and_a_tool_call_in_one_chunk_keep_both():
    events, m = run([chunk({"content": "Running it.", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]}),
        chunk({}, "tool_calls")])
    check_stream(events)
    assert [(b["type"], b.get("text") or b.get("input")) for b in m.message["content"]] == [
        ("text", "Running it."), ("tool_use", {"command": "ls"})]


def test_the_passthrough_tap_relays_every_byte_and_reads_the_same_usage_at_every_boundary():
    from relay.messages_stream import MessagesTap
    from relay.outcome import StreamOutcome

    data = (Path(__file__).parent / "fixtures" / "anthropic" / "text.sse").read_bytes()

    def tap(pieces):
        outcome = StreamOutcome()
        t = MessagesTap(True, outcome, "claude")
        relayed = b"".join(t.feed(p) for p in pieces) + t.end()
        return relayed, outcome.usage, outcome.error

    relayed, usage, error = tap([data])
    assert relayed == data and error is None
    assert usage["prompt_tokens"] == 21 + 1800 + 200 and usage["prompt_tokens_details"]["cached_tokens"] == 1800
    assert usage["completion_tokens"] == 18
    for cut in range(1, len(data)):
        assert tap([data[:cut], data[cut:]]) == (data, usage, None), f"split at byte {cut}"
    cut_short, _, error = tap([data[: data.index(b"event: message_delta")]])
    assert error is not None and cut_short.endswith(b'"request_id":null}\n\n') and b"event: error" in cut_short


def test_a_call_whose_name_comes_after_its_id_opens_with_the_name():
    events, m = run([chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": '{"a"'}}]}),
                     chunk({"tool_calls": [{"index": 0, "function": {"name": "late", "arguments": ": 1}"}}]}),
                     chunk({}, "tool_calls")])
    check_stream(events)
    assert events[1]["content_block"]["name"] == "late" and m.message["content"][0]["input"] == {"a": 1}
