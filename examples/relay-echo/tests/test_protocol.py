"""The plugin's pure parts, tested without a server: request, answer, stream and errors.
(End to end through Relay, with a fake Echo server and the openai SDK: tests/test_plugins.py.)"""
from __future__ import annotations

import json

import pytest
from relay_adaptors.kernel.errors import RelayError

from relay_echo.protocol import LiveConverter, to_completion, to_error, to_script

LINES = [{"say": "echo: "}, {"say": "héllo "}, {"say": "🎉"}, {"done": {"heard": 3, "spoken": 3, "ending": "done"}}]
LIVE = b"".join(json.dumps(line).encode() + b"\n" for line in LINES)


def run(pieces: list[bytes]) -> list[object]:
    conv = LiveConverter("e", "m")
    out = [item for piece in pieces for item in conv.feed(piece)]
    return out + conv.close()


def content(items: list[object]) -> str:
    return "".join(i["choices"][0]["delta"].get("content") or "" for i in items if isinstance(i, dict) and i["choices"])


def test_script_from_chat():
    script = to_script({"model": "pub", "messages": [{"role": "developer", "content": "terse"},
                                                     {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                                     {"role": "assistant", "content": "echo: hi"}],
                        "max_tokens": 9, "temperature": 1}, "v", 200)
    assert script.body == {"voice": "v", "max_words": 9, "script": [
        {"who": "director", "line": "terse"}, {"who": "human", "line": "hi"}, {"who": "echo", "line": "echo: hi"}]}
    assert script.ignored == ["temperature"]


@pytest.mark.parametrize("request_, param", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c"}]}, "messages[0].role"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}, "messages[0].tool_calls"),
    ({"messages": [], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [], "n": 2}, "n"),
])
def test_what_echo_cannot_do_is_a_400_naming_the_param(request_, param):
    with pytest.raises(RelayError) as e:
        to_script(request_, "v", 200)
    assert (e.value.status, e.value.param) == (400, param)


def test_answer_to_completion():
    done = to_completion("e", b'{"said": "echo: hi", "heard": 1, "spoken": 2, "ending": "out_of_words"}', "pub")
    assert done["choices"][0]["message"]["content"] == "echo: hi" and done["choices"][0]["finish_reason"] == "length"
    assert (done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"], done["model"]) == (1, 2, "pub")
    with pytest.raises(RelayError) as e:
        to_completion("e", b'{"said": "x"}', "pub")
    assert e.value.status == 502


def test_stream_is_the_same_however_the_bytes_are_cut():
    whole = run([LIVE])
    assert content(whole) == "echo: héllo 🎉"
    assert whole[-1]["usage"]["total_tokens"] == 6 and whole[-2]["choices"][0]["finish_reason"] == "stop"
    for cut in range(1, len(LIVE)):
        assert content(run([LIVE[:cut], LIVE[cut:]])) == content(whole)
    assert content(run([LIVE[i:i + 1] for i in range(len(LIVE))])) == content(whole)


def test_trouble_mid_stream_is_the_last_item_and_an_early_end_is_an_error():
    items = run([b'{"say": "echo: "}\n{"trouble": "lost"}\n{"say": "ignored"}\n'])
    assert isinstance(items[-1], RelayError) and "lost" in items[-1].message and content(items) == "echo: "
    conv = LiveConverter("e", "m")
    conv.feed(b'{"say": "echo"}\n')
    with pytest.raises(ValueError):
        conv.close()  # Relay's HttpAdaptor turns this into a 502 item for the client


def test_errors_keep_their_meaning():
    busy = to_error("e", 429, b'{"trouble": "busy", "retry_in": 7}')
    assert (busy.status, busy.headers, busy.retryable) == (429, {"retry-after": "7"}, True)
    assert to_error("e", 503, b'{"trouble": "closed"}').retryable
    assert to_error("e", 401, b"").code == "upstream_auth_error"
    refused = to_error("e", 400, b"not json")
    assert (refused.status, refused.retryable) == (400, False)
