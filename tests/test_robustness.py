"""Nothing a client sends crashes the server: arbitrary JSON gets an answer or an OpenAI error
object, never a 500."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .spec import validate_error

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
FIELDS = ["model", "messages", "input", "role", "content", "type", "text", "tools", "tool_choice", "function", "name",
          "arguments", "call_id", "output", "stream", "image_url", "url", "instructions", "max_tokens", "n", "stop",
          "response_format", "text", "format", "reasoning", "effort", "tool_calls", "tool_call_id", "parameters"]
# Bodies shaped like requests (known field names, wrong values) reach deep into the converters.
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["demo", "user", "assistant", "tool", "function",
                                                                    "input_text", "input_image", "message", "", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=6),
    max_leaves=30,
)
MODELS = st.sampled_from(["demo", "claude-text", "gpt-4.1-mini"])  # mock, anthropic and openai channels
BODIES = st.one_of(JSON, st.tuples(MODELS, SHAPED).map(lambda mb: {"model": mb[0], **mb[1]} if isinstance(mb[1], dict) else mb[1]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, path=st.sampled_from(["/v1/chat/completions", "/v1/responses"]))
async def test_arbitrary_bodies_never_crash(claude_relay, body, path):
    relay = claude_relay
    if isinstance(body, dict):
        body.pop("stream", None)  # keep to one answer per example
    resp = await relay.post(path, json.dumps(body))
    raw = await resp.read()
    assert resp.status < 500, raw[:500]
    if resp.status >= 400:
        validate_error(json.loads(raw))
