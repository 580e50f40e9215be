"""The mock channel is a product feature: deterministic, realistic usage, honours max_tokens."""
from __future__ import annotations

from relay_adaptors.mock.reply import make_reply, split_even


def req(text: str, **kw):
    return {"model": "demo", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}], **kw}


def test_same_prompt_same_answer_and_different_prompt_different_answer():
    assert make_reply(req("a question"), None) == make_reply(req("a question"), None)
    assert make_reply(req("a question"), None).text != make_reply(req("another"), None).text


def test_usage_grows_with_the_prompt():
    short, long = make_reply(req("hi"), None), make_reply(req("hi " * 400), None)
    assert 0 < short.prompt_tokens < long.prompt_tokens
    assert short.completion_tokens > 0


def test_max_tokens_truncates_with_length():
    r = make_reply(req("tell me everything"), None)
    cut = make_reply(req("tell me everything", max_tokens=3), None)
    assert r.finish_reason == "stop" and cut.finish_reason == "length"
    assert r.text.startswith(cut.text) and cut.completion_tokens <= 3


def test_fixed_reply():
    assert make_reply(req("x"), "Always this.").text == "Always this."


def test_split_even_rejoins():
    for n in (1, 3, 8, 100):
        parts = split_even("hello world", n)
        assert "".join(parts) == "hello world" and len(parts) == min(n, 11)
