"""The claude_cli channel's pure parts: what goes where when a request becomes a process
(prompt.build), what is refused before anything starts, spawn errors, and scrubbing."""
from __future__ import annotations

import errno
import json
from collections.abc import Callable
from typing import Any

import pytest

from relay_adaptors.claude_cli import prompt
from relay_adaptors.claude_cli.adaptor import spawn_error
from relay_adaptors.kernel.errors import RelayError, scrubbed
from relay_adaptors.kernel.redaction import Redactor

SYS = "SYSTEM-MARKER-" + "s" * 50
USER = "USER-MARKER-" + "u" * 50
KEY = "sk-ant-scrub-me-0123456789"


def build(req: dict[str, Any], **kw: Any) -> prompt.Invocation:
    return prompt.build(req, "claude-x", command="/opt/claude", base_env={"PATH": "/bin"}, home="", extra_args=["--x"],
                        api_key=KEY, base_url=None, first_byte=30, **kw)


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SYS},
        {"role": "user", "content": [{"type": "text", "text": "first " + USER},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "ok", "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": USER},
    ]


def test_nothing_from_the_request_is_on_the_command_line_or_in_the_environment() -> None:
    inv = build({"messages": conversation(), "max_tokens": 100, "reasoning_effort": "high"})
    for part in [*inv.argv, *inv.env.values()]:
        assert "MARKER" not in part and "iVBOR" not in part and '"a"' not in part
    i = inv.argv.index("--system-prompt-file")
    assert inv.argv[i + 1] == prompt.SYSTEM_PROMPT_FILE and "--system-prompt" not in inv.argv
    assert inv.files == {prompt.SYSTEM_PROMPT_FILE: SYS.encode()}
    line = json.loads(inv.stdin)
    assert line["type"] == "user" and USER in json.dumps(line) and "iVBORw0KGgo=" in json.dumps(line)
    assert inv.env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "100" and inv.argv[inv.argv.index("--effort") + 1] == "high"


def test_a_200_kb_system_prompt_goes_in_the_file_whole() -> None:
    big = "Regel: " + "ä" * 100_000  # 200 KB of UTF-8: more than one argv string may hold
    inv = build({"messages": [{"role": "system", "content": big}, {"role": "user", "content": "hi"}]})
    assert inv.files[prompt.SYSTEM_PROMPT_FILE].decode() == big
    assert max(len(a) for a in inv.argv) < 100


@pytest.mark.parametrize("mutate, param", [
    (lambda m: m[0].update(content="a\x00b"), "messages[0].content"),
    (lambda m: m[1]["content"][0].update(text="\x00"), "messages[1].content[0].text"),
    (lambda m: m[2]["tool_calls"][0]["function"].update(arguments='{"a": "\x00"}'), "messages[2].tool_calls[0].function.arguments"),
    (lambda m: m[3].update(content="4\x002"), "messages[3].content"),
    (lambda m: m[4].update(content="last\x00"), "messages[4].content"),
])
def test_a_nul_anywhere_is_a_400_naming_it(mutate: Callable[[list[dict[str, Any]]], Any], param: str) -> None:
    messages = conversation()
    mutate(messages)
    with pytest.raises(RelayError) as e:
        build({"messages": messages})
    assert (e.value.status, e.value.param, e.value.code) == (400, param, "invalid_value")
    assert "NUL" in e.value.message


def test_a_nul_deep_in_a_part_s_extra_fields_is_found_without_recursion() -> None:
    deep: Any = "\x00"
    for _ in range(5000):
        deep = {"x": deep}
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "extra": deep}]}]
    with pytest.raises(RelayError) as e:
        build({"messages": messages})
    param = e.value.param or ""
    assert param.startswith("messages[0].content[1].extra.x.x") and len(param) == prompt.MAX_PARAM  # bounded


def test_prompts_over_the_cap_are_a_400_before_anything_starts() -> None:
    messages = [{"role": "system", "content": "s" * 600}, {"role": "user", "content": "u" * 300}]
    size = len(build({"messages": messages}).stdin) + 600
    assert build({"messages": messages}, max_prompt_bytes=size).files  # exactly at the cap: fine
    with pytest.raises(RelayError) as e:
        build({"messages": messages}, max_prompt_bytes=size - 1)
    assert (e.value.status, e.value.param, e.value.code) == (400, "messages", "prompt_too_large")
    assert prompt.MAX_PROMPT_BYTES == 16 * 1024 * 1024  # the cap the README documents


@pytest.mark.parametrize("value", ["100", 1.5, True, 0, -3])
def test_max_tokens_must_be_a_positive_integer(value: Any) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(RelayError) as e:
            build({"messages": [{"role": "user", "content": "hi"}], name: value})
        assert (e.value.status, e.value.param) == (400, name)


@pytest.mark.parametrize("err, local", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/opt/secret/path/claude"), False),
    (PermissionError(errno.EACCES, "Permission denied", "/opt/secret/path/claude"), False),
    (OSError(errno.E2BIG, "Argument list too long", "/opt/secret/path/claude"), False),
    (ValueError("embedded null byte"), False),
    (OSError(errno.ENOSPC, "No space left on device", "/opt/secret/path/tmp"), True),
    (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), True),
    (OSError(errno.EMFILE, "Too many open files"), True),
])
def test_spawn_errors_name_no_server_detail_and_only_host_exhaustion_is_local(err: OSError | ValueError, local: bool) -> None:
    out = spawn_error("cli", err)
    assert (out.status, out.code, out.local, out.retryable) == (502, "upstream_unreachable", local, True)
    shown = json.dumps(out.body())
    assert "/opt" not in shown and (getattr(err, "strerror", None) or str(err)) not in shown


def test_the_scrubber_cleans_every_client_visible_field() -> None:
    err = RelayError(502, f"bad key {KEY}!", type=f"t-{KEY}", code=KEY, param=f"p.{KEY}", headers={"x-k": KEY})
    out = scrubbed(err, Redactor([KEY]))
    assert KEY not in json.dumps(out.body()) + json.dumps(out.headers) + str(out)
    assert out.message == "bad key [redacted]!"


def test_the_scrubber_removes_the_longest_secret_first_and_leaves_tiny_ones() -> None:
    s = Redactor(["abcdefgh", "abcdefghijkl", "abcd"])
    assert s("xx abcdefghijkl abcd abcdefgh") == "xx [redacted] abcd [redacted]"
