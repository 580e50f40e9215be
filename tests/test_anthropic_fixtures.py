"""The recorded Anthropic transcripts are realistic (the official SDK's types accept them) and
the sans-IO converter gives the same chunks however the bytes are split."""
from __future__ import annotations

import json

import pytest
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from relay_adaptors.anthropic.stream import SSEConverter
from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.errors import RelayError

from .fakes.base import FIXTURES
from .support import sse_frames

DIR = FIXTURES / "anthropic"
STREAMS = sorted(DIR.glob("*.sse"))
EVENT = TypeAdapter(RawMessageStreamEvent)


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_stream_fixtures_parse_as_sdk_events(path):
    for event, data in sse_frames(path.read_text()):
        payload = json.loads(data)
        assert event == payload["type"]
        if payload["type"] == "ping":  # keep-alive; the SDK's stream reader skips it too
            assert payload == {"type": "ping"}
        elif payload["type"] == "error":
            ErrorResponse.model_validate({**payload, "request_id": None})
        else:
            EVENT.validate_python(payload)


@pytest.mark.parametrize("path", sorted(DIR.glob("*.json")), ids=lambda p: p.name)
def test_body_fixtures_parse_as_sdk_types(path):
    body = json.loads(path.read_text())
    (ErrorResponse if path.name.startswith("error-") else Message).model_validate(body)


def normalised(items):
    out = []
    for item in chunks.expand(items):  # text items as the chunks they stand for
        if isinstance(item, RelayError):
            out.append(("error", item.status, item.message))
        else:
            out.append({k: v for k, v in item.items() if k not in ("id", "created")})
    return out


def convert(pieces):
    conv = SSEConverter("claude", "m")
    items = []
    for p in pieces:
        items += conv.feed(p)
    return normalised(items + conv.close())


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_byte_by_byte_equals_whole(path):
    data = path.read_bytes()
    assert convert([data[i : i + 1] for i in range(len(data))]) == convert([data])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=1, max_value=5000), max_size=30))
def test_any_chunking_equals_whole(path, cuts):
    data = path.read_bytes()
    points = sorted({c % len(data) for c in cuts} - {0})
    assert convert([data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]) == convert([data])


def test_truncated_stream_is_an_error():
    data = (DIR / "text.sse").read_bytes()
    items = convert([data[: data.index(b"event: message_stop")]])
    assert items[-1][0] == "error" and "message_stop" in items[-1][2]
