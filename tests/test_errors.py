"""Every failure answers with an OpenAI error object, the right status and a usable message."""
from __future__ import annotations

import json

import pytest

from .spec import validate_error
from .support import ACME_KEY, GLOBEX_KEY, UPSTREAM_KEY

HELLO = [{"role": "user", "content": "hi"}]


async def error_of(resp):
    body = json.loads(await resp.read())
    validate_error(body)
    return body["error"]


async def test_malformed_json_is_400(relay):
    resp = await relay.post("/v1/chat/completions", b'{"model": "gpt-4.1-mini", "messages": [')
    assert resp.status == 400
    assert "not valid JSON" in (await error_of(resp))["message"]


async def test_empty_body_is_400(relay):
    resp = await relay.post("/v1/chat/completions", b"")
    assert resp.status == 400


async def test_body_must_be_an_object(relay):
    resp = await relay.post("/v1/chat/completions", b"[1, 2]")
    assert resp.status == 400


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": HELLO}, "model"),
        ({"model": "gpt-4.1-mini"}, "messages"),
        ({"model": "gpt-4.1-mini", "messages": []}, "messages"),
        ({"model": "gpt-4.1-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4.1-mini", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "gpt-4.1-mini", "messages": HELLO + [{"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
        ({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].image_url"),
        ({"model": "gpt-4.1-mini", "messages": HELLO, "temperature": 7}, "temperature"),
        ({"model": "gpt-4.1-mini", "messages": HELLO, "stream": "yes"}, "stream"),
        ({"model": "gpt-4.1-mini", "messages": HELLO, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ],
)
async def test_invalid_field_is_400_naming_param(relay, fake_openai, body, param):
    resp = await relay.post("/v1/chat/completions", body)
    assert resp.status == 400
    err = await error_of(resp)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"
    assert fake_openai.requests == []  # nothing invalid goes upstream


async def test_missing_key_is_401(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}, key=None)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "missing_api_key"


async def test_wrong_key_is_401(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}, key="sk-wrong")
    assert resp.status == 401
    err = await error_of(resp)
    assert err["code"] == "invalid_api_key" and "sk-wrong" not in err["message"]


async def test_x_api_key_header_is_accepted(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "demo", "messages": HELLO}, key=None, **{"x-api-key": ACME_KEY})
    assert resp.status == 200


async def test_model_of_another_tenant_is_404_like_an_unknown_one(relay, fake_openai):
    # No existence oracle: outside the allowlist looks exactly like "does not exist".
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}, key=GLOBEX_KEY)
    assert resp.status == 404
    err = await error_of(resp)
    assert err == {"message": "The model 'gpt-4.1-mini' does not exist.", "type": "invalid_request_error",
                   "param": "model", "code": "model_not_found"}
    assert fake_openai.requests == []


async def test_unknown_model_is_404(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-nonexistent", "messages": HELLO})
    assert resp.status == 404
    err = await error_of(resp)
    assert err["code"] == "model_not_found" and err["param"] == "model"


async def test_body_too_large_is_413(relay, fake_openai):
    big = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x" * 70_000}]}
    resp = await relay.post("/v1/chat/completions", big)
    assert resp.status == 413
    await error_of(resp)
    assert fake_openai.requests == []


async def test_unknown_path_and_method_are_openai_errors(relay):
    resp = await relay.post("/v1/nothing-here", {})
    assert resp.status == 404
    await error_of(resp)


async def test_upstream_unreachable_is_502(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "broken-unreachable", "messages": HELLO})
    assert resp.status == 502
    err = await error_of(resp)
    assert err["code"] == "upstream_unreachable" and "nowhere" in err["message"]


async def test_upstream_timeout_is_504(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "slow-hang", "messages": HELLO})
    assert resp.status == 504
    err = await error_of(resp)
    assert err["code"] == "upstream_timeout" and "first_byte" in err["message"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, status", [("broken-400", 400), ("broken-429", 429), ("broken-500", 500)])
async def test_upstream_http_errors_keep_status_and_message(relay, model, status, stream):
    resp = await relay.post("/v1/chat/completions", {"model": model, "messages": HELLO, "stream": stream})
    assert resp.status == status
    err = await error_of(resp)
    assert err["message"] == f"upstream says {status}"
    if status == 429:
        assert resp.headers["retry-after"] == "7"


@pytest.mark.parametrize("model", ["broken-401", "broken-403"])
async def test_upstream_auth_failure_is_502_without_the_key(relay, model):
    resp = await relay.post("/v1/chat/completions", {"model": model, "messages": HELLO})
    assert resp.status == 502
    raw = (await resp.read()).decode()
    err = await error_of(resp)
    assert err["code"] == "upstream_auth_error"
    assert UPSTREAM_KEY not in raw and ACME_KEY not in raw


async def test_upstream_messages_never_carry_the_channel_key(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "broken-echo", "messages": HELLO})
    raw = (await resp.read()).decode()
    assert resp.status == 429 and UPSTREAM_KEY not in raw
    assert (await error_of(resp))["message"] == "quota exceeded for key [redacted]"


async def test_upstream_garbage_is_502(relay):
    resp = await relay.post("/v1/chat/completions", {"model": "broken-garbage", "messages": HELLO})
    assert resp.status == 502
    assert (await error_of(resp))["code"] == "bad_upstream_response"


async def test_request_id_is_echoed_or_generated(relay, fake_openai):
    resp = await relay.post("/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": HELLO}, **{"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    assert fake_openai.last.headers["x-request-id"] == "abc-123"
    assert fake_openai.last.headers.getall("User-Agent") == ["relay-gateway"]  # Relay's own, once, not the HTTP client's
    resp = await relay.post("/v1/chat/completions", {"model": "nope", "messages": HELLO})
    assert resp.headers["x-request-id"].startswith("req_")
