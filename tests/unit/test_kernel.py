"""Small kernel helpers with one home each: content text, max output tokens, field paths,
the reasoning key."""
from __future__ import annotations

import pytest

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.chat import max_output_tokens
from relay_adaptors.kernel.content import content_text
from relay_adaptors.kernel.params import format_loc
from relay_adaptors.kernel.tokens import estimate_prompt
from relay_adaptors.responses import request as responses_request

PARTS = [{"type": "text", "text": "one"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
         {"type": "text", "text": "two"}, {"type": "refusal", "refusal": "no"}]


@pytest.mark.parametrize("value, text", [
    ("plain", "plain"),
    ("", ""),
    (None, ""),
    ([], ""),
    (PARTS, "one\ntwo"),
    ([{"type": "text"}, {"type": "text", "text": 3}, "junk", {"type": "text", "text": "ok"}], "ok"),
    ({"type": "text", "text": "a dict is not content"}, ""),
])
def test_content_text(value, text):
    assert content_text(value) == text


def test_content_text_with_a_separator():
    assert content_text(PARTS, sep=" ") == "one two"


def test_the_prompt_estimate_counts_only_text():
    with_image = [{"role": "user", "content": PARTS}]
    as_text = [{"role": "user", "content": "one\ntwo"}]
    assert estimate_prompt(with_image) == estimate_prompt(as_text)


@pytest.mark.parametrize("req, cap", [
    ({}, None),
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 50}, 50),
    ({"max_completion_tokens": 50, "max_tokens": 100}, 50),  # the newer name wins
    ({"max_completion_tokens": None, "max_tokens": 100}, 100),
    ({"max_tokens": True}, None),
])
def test_max_output_tokens(req, cap):
    assert max_output_tokens(req) == cap


@pytest.mark.parametrize("loc, text", [
    ((), ""),
    (("model",), "model"),
    (("messages", 2, "content"), "messages[2].content"),
    (("tenants", 0, "limits", "models", "gpt-4.1", "rpm"), "tenants[0].limits.models.gpt-4.1.rpm"),
])
def test_format_loc(loc, text):
    assert format_loc(loc) == text


def test_the_bridge_and_the_adaptors_use_one_reasoning_key():
    assert responses_request.REASONING_KEY == chunks.REASONING_KEY
