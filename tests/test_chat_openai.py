"""Chat completions through an `openai` channel, driven by the official openai SDK."""
from __future__ import annotations

import json

import pytest

from .spec import validate, validate_error
from .support import ACME_KEY, UPSTREAM_KEY, sse_frames

HELLO = [{"role": "user", "content": "Say hello"}]


async def test_non_stream_answer_matches_spec_and_upstream(relay, fake_openai):
    resp = await relay.client().chat.completions.create(model="gpt-4.1-mini", messages=HELLO)
    assert resp.choices[0].message.content == "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."
    assert resp.usage.prompt_tokens == 19 and resp.usage.completion_tokens == 17
    validate("CreateChatCompletionResponse", resp.model_dump(mode="json", exclude_unset=True))


async def test_forwarded_body_renames_model_and_keeps_unknown_fields(relay, fake_openai):
    body = {"model": "gpt-4.1-mini", "messages": HELLO, "temperature": 0.2, "seed": 7,
            "some_vendor_flag": {"nested": [1, 2]}}
    resp = await relay.post("/v1/chat/completions", body)
    assert resp.status == 200
    got = fake_openai.last
    assert got.body == {**body, "model": "text"}
    assert got.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert got.headers["OpenAI-Organization"] == "org-test"
    assert ACME_KEY not in json.dumps(dict(got.headers))  # the tenant's key never goes upstream


async def test_raw_body_is_valid_chat_completion(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-tools", "messages": HELLO})
    body = json.loads(await resp.read())
    validate("CreateChatCompletionResponse", body)
    assert [c["function"]["name"] for c in body["choices"][0]["message"]["tool_calls"]] == ["get_weather", "get_time"]


async def test_stream_with_sdk_accumulates_text(relay):
    async with relay.client().chat.completions.stream(model="gpt-4.1-mini", messages=HELLO) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-tools", "gpt-reasoning", "gpt-length"])
@pytest.mark.parametrize("include_usage", [False, True])
async def test_every_stream_chunk_matches_spec(relay, fake_openai, model, include_usage):
    body = {"model": model, "messages": HELLO, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    resp, text = await relay.raw_stream("/v1/chat/completions", body)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    frames = sse_frames(text)
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in frames[:-1]]
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c)
    usage_chunks = [c for c in chunks if c.get("usage")]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    else:
        assert usage_chunks == [] and all("usage" not in c for c in chunks)
    # Upstream is always asked for usage, so Relay can account for it.
    assert fake_openai.last.body["stream_options"] == {"include_usage": True}


async def test_stream_tool_calls_reach_sdk(relay):
    async with relay.client().chat.completions.stream(model="gpt-tools", messages=HELLO) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_Wx1yZ2aB3cD4eF5gH6iJ7kL8", "get_weather", {"city": "Paris"}),
        ("call_Mn9oP0qR1sT2uV3wX4yZ5aB6", "get_time", {"tz": "Europe/Paris"}),
    ]


@pytest.mark.parametrize("chunking", ["byte", "random"])
async def test_stream_survives_any_upstream_chunking(relay, fake_openai, chunking):
    fake_openai.chunking = chunking
    async with relay.client().chat.completions.stream(model="gpt-4.1-mini", messages=HELLO) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Bonjour ! Voici un café ☕ et des émojis 🎉 — très bien."


async def test_error_after_first_byte_is_an_in_band_error_frame(relay):
    resp, text = await relay.raw_stream("/v1/chat/completions", {"model": "gpt-midstream-error", "messages": HELLO, "stream": True})
    assert resp.status == 200
    frames = sse_frames(text)
    last = json.loads(frames[-1][1])
    validate_error(last)
    assert "server had an error" in last["error"]["message"]
    assert (None, "[DONE]") not in frames
    texts = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in frames[:-1]]
    assert "".join(t for t in texts if t) == "Partial answer"


async def test_sdk_raises_on_in_band_error(relay):
    import openai

    with pytest.raises(openai.APIError):
        async with relay.client().chat.completions.stream(model="gpt-midstream-error", messages=HELLO) as stream:
            await stream.get_final_completion()


async def test_truncated_upstream_stream_ends_with_error_frame(relay):
    resp, text = await relay.raw_stream("/v1/chat/completions", {"model": "gpt-truncated", "messages": HELLO, "stream": True})
    last = json.loads(sse_frames(text)[-1][1])
    validate_error(last)
    assert last["error"]["code"] == "bad_upstream_response"


async def test_idle_timeout_mid_stream_ends_with_error_frame(relay):
    resp, text = await relay.raw_stream("/v1/chat/completions", {"model": "gpt-hang-midstream", "messages": HELLO, "stream": True})
    last = json.loads(sse_frames(text)[-1][1])
    validate_error(last)
    assert last["error"]["code"] == "upstream_timeout" and "idle" in last["error"]["message"]


async def test_mock_channel_streams_and_answers(relay):
    client = relay.client()
    full = await client.chat.completions.create(model="demo", messages=HELLO)
    validate("CreateChatCompletionResponse", full.model_dump(mode="json", exclude_unset=True))
    async with client.chat.completions.stream(model="demo", messages=HELLO) as stream:
        streamed = await stream.get_final_completion()
    assert streamed.choices[0].message.content == full.choices[0].message.content
    assert "Say hello" in full.choices[0].message.content
    assert full.usage.prompt_tokens > 0 and full.usage.completion_tokens > 0
