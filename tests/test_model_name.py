"""One rule for `model` in every answer: the name the client asked for, on every channel type
and API, streamed or not; the upstream's own name travels in x-relay-upstream-model."""
from __future__ import annotations

import json

import pytest

from .spec import validate, validate_response_event
from .support import responses_events, sse_frames

CHAT = [("gpt-4.1-mini", "text"), ("claude-text", "text"), ("demo", "demo")]
RESPONSES = [*CHAT, ("gpt-native", "native-model")]  # a native Responses channel relays the upstream's frames


@pytest.mark.parametrize("model, upstream", CHAT)
@pytest.mark.parametrize("stream", [False, True])
async def test_chat_answers_name_the_requested_model(claude_relay, model, upstream, stream):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if not stream:
        resp, answer = await claude_relay.post_json("/v1/chat/completions", body)
        assert resp.status == 200 and answer["model"] == model
        validate("CreateChatCompletionResponse", answer)
    else:
        resp, text = await claude_relay.raw_stream("/v1/chat/completions", body)
        chunks = [json.loads(d) for _, d in sse_frames(text) if d != "[DONE]"]
        assert resp.status == 200 and chunks and {c["model"] for c in chunks} == {model}
        for c in chunks:
            validate("CreateChatCompletionStreamResponse", c)
    assert resp.headers["x-relay-upstream-model"] == upstream
    assert resp.headers["x-request-id"]  # streamed answers carry it too


@pytest.mark.parametrize("model, upstream", RESPONSES)
@pytest.mark.parametrize("stream", [False, True])
async def test_responses_answers_name_the_requested_model(claude_relay, model, upstream, stream):
    body = {"model": model, "input": "hi", "stream": stream}
    if not stream:
        resp, answer = await claude_relay.post_json("/v1/responses", body)
        assert resp.status == 200 and answer["model"] == model
        validate("Response", answer)
    else:
        resp, text = await claude_relay.raw_stream("/v1/responses", body)
        events = responses_events(text)
        for e in events:
            validate_response_event(e)
        named = {e["response"]["model"] for e in events if "response" in e}
        assert resp.status == 200 and named == {model}
    assert resp.headers["x-relay-upstream-model"] == upstream
