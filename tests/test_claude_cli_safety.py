"""The claude_cli channel under hostile or unlucky requests: big and NUL-laden prompts, busy
queues, secrets in the CLI's output, process groups that will not die, stdin never read,
cancellation. Real processes throughout (the pinned `claude` CLI or the stand-in)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.appkeys import BREAKERS
from relay_adaptors.claude_cli import ClaudeCliAdaptor
from relay_adaptors.claude_cli.process import KILL_GRACE, STDERR_TAIL, CliProcess
from relay_adaptors.kernel.base import Call
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.redaction import Redactor
from relay_config.loader import parse_config
from relay_config.schema import ClaudeCliChannel

from .spec import validate_error
from .support import ACME_KEY, sse_frames
from .support.cli import HELLO, adaptor_of, eventually, gone, post, private_tmp, processes, real_cli_config, stand_in_config

LEAKY_KEY = "sk-ant-leaky-0123456789abcdef"
MakeRelay = Callable[..., Awaitable[Any]]  # tests/conftest.py make_relay


@pytest.fixture(autouse=True)
def cli_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_tmp(tmp_path, monkeypatch)


def direct_adaptor(config_text: str) -> ClaudeCliAdaptor:
    """The adaptor alone, for what the HTTP layer does not show (the `local` flag, cancellation)."""
    cfg = parse_config(config_text, "test.yaml", env={}).channels[0]
    assert isinstance(cfg, ClaudeCliChannel)
    return ClaudeCliAdaptor(cfg)


def call(messages: list[dict[str, Any]] = HELLO) -> Call:
    return Call({"model": "cli", "messages": messages}, "cli", "req_test")


def released(adaptor: ClaudeCliAdaptor, tmp: Path) -> bool:
    """No process counted, the single slot free, no process directory left."""
    assert adaptor.cfg.max_concurrent == 1
    return adaptor.running == 0 and not adaptor.slots.locked() and not list(tmp.iterdir())


def dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # killed, waiting for its new parent to reap it


# --- no prompt material on argv; size and NUL up front -----------------------------------

async def test_a_200_kb_system_message_through_the_real_cli(make_relay: MakeRelay, fake_anthropic: Any, cli_tmp: Path) -> None:
    big = "Antworte auf Deutsch. " + "Grüße " * 35_000  # ~245 KB: more than one argv string may hold
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    r, body = await post(relay, {"model": "cli-text", "messages": [{"role": "system", "content": big},
                                                                   {"role": "user", "content": "hello"}]})
    assert r.status == 200, body
    assert big in "".join(b["text"] for b in fake_anthropic.last.body["system"])
    assert await gone(cli_tmp)


async def test_the_prompt_goes_by_private_file_and_stdin_never_argv(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path) -> None:
    relay = await make_relay(stand_in_config(tmp_path, "argv", uuid.uuid4().hex))
    system, user = "SYSTEM-" + uuid.uuid4().hex, "USER-" + uuid.uuid4().hex
    r, body = await post(relay, {"model": "cli", "messages": [{"role": "system", "content": system},
                                                              {"role": "user", "content": user}]})
    seen = json.loads(body["choices"][0]["message"]["content"])
    assert not any(system in a or user in a for a in seen["argv"])
    assert seen["system"] == system and user in seen["stdin"]
    assert seen["file"].startswith(f"{cli_tmp}/relay-cli-") and Path(seen["file"]).parent == Path(seen["cwd"])
    assert seen["file_mode"] == 0o600 and not Path(seen["file"]).exists()  # private, and removed afterwards


async def test_a_prompt_over_the_cap_is_a_400_and_starts_nothing(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path) -> None:
    config = stand_in_config(tmp_path, "env", uuid.uuid4().hex) + "server: {max_body_bytes: 20000000}\n"
    relay = await make_relay(config)
    huge = [{"role": "system", "content": "s" * (16 * 1024 * 1024)}, {"role": "user", "content": "hi"}]
    r, body = await post(relay, {"model": "cli", "messages": huge})
    assert r.status == 400 and body["error"]["param"] == "messages" and body["error"]["code"] == "prompt_too_large"
    validate_error(body)
    assert not list(cli_tmp.iterdir())  # validated before a directory or a process was made


@pytest.mark.parametrize("messages, param", [
    ([{"role": "system", "content": "Answer\x00 in German."}, {"role": "user", "content": "hi"}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "text", "text": "hi\x00there"}]}], "messages[0].content[0].text"),
])
async def test_a_nul_is_a_400_and_leaks_no_slot_or_directory(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path, messages: list[dict[str, Any]], param: str) -> None:
    relay = await make_relay(stand_in_config(tmp_path, "env", uuid.uuid4().hex, max_concurrent=1, queue_timeout=1))
    r, body = await post(relay, {"model": "cli", "messages": messages})
    assert r.status == 400 and body["error"]["param"] == param
    validate_error(body)
    assert released(adaptor_of(relay), cli_tmp)
    r, _ = await post(relay, {"model": "cli", "messages": HELLO})
    assert r.status == 200  # the only slot is still there
    assert released(adaptor_of(relay), cli_tmp)


# --- channel health: Relay's own refusals are local ---------------------------------------

async def test_channel_busy_is_local(tmp_path: Path, cli_tmp: Path) -> None:
    adaptor = direct_adaptor(stand_in_config(tmp_path, "slow", uuid.uuid4().hex, max_concurrent=1, queue_timeout=0.2))
    first = await adaptor.open_stream(call())
    try:
        with pytest.raises(RelayError) as e:
            await adaptor.open_stream(call())
        assert (e.value.status, e.value.code, e.value.local) == (429, "channel_busy", True)
    finally:
        await first.aclose()  # never iterated: closing it must still end the process
    assert released(adaptor, cli_tmp)


async def test_relay_s_own_refusals_leave_the_breaker_closed(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path) -> None:
    relay = await make_relay(stand_in_config(tmp_path, "slow", uuid.uuid4().hex, max_concurrent=1, queue_timeout=0.2))
    holder = asyncio.create_task(post(relay, {"model": "cli", "messages": HELLO}))
    assert await eventually(lambda: adaptor_of(relay).running == 1, 5)
    for _ in range(4):  # more than `cooldown.failures`
        r, body = await post(relay, {"model": "cli", "messages": HELLO})
        assert r.status == 429 and body["error"]["code"] == "channel_busy"
    r, body = await post(relay, {"model": "cli", "messages": [{"role": "user", "content": "\x00"}]})
    assert r.status == 400
    state = relay.server.app[BREAKERS].snapshot().get("fake-cli", {"state": "closed", "consecutive_failures": 0})
    assert (state["state"], state["consecutive_failures"]) == ("closed", 0)
    assert (await holder)[0].status == 200


async def test_a_missing_binary_is_the_channel_s_fault_and_hides_the_path(tmp_path: Path, cli_tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    adaptor = direct_adaptor(stand_in_config(tmp_path, "env", "m", max_concurrent=1, command="/nonexistent/claude"))
    with pytest.raises(RelayError) as e:
        await adaptor.open_stream(call())
    assert (e.value.status, e.value.local) == (502, False) and "/nonexistent" not in json.dumps(e.value.body())
    assert "/nonexistent/claude" in caplog.text
    assert released(adaptor, cli_tmp)


# --- the whole process group dies -----------------------------------------------------------

@pytest.mark.parametrize("mode, code", [("orphan", "upstream_timeout"),  # the leader dies on SIGTERM
                                        ("orphan-exit", "upstream_error")])  # the leader has already exited
async def test_a_grandchild_ignoring_sigterm_is_killed(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path, mode: str, code: str) -> None:
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, mode, marker, max_concurrent=1,
                                             timeout="{first_byte: 5, idle: 1, total: 30}"))
    resp, text = await post(relay, {"model": "cli", "messages": HELLO}, stream=True)
    frames = [json.loads(d) for _, d in sse_frames(text) if d != "[DONE]"]
    content = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f.get("choices"))
    found = re.fullmatch(r"pid=(\d+)", content)
    assert found, content
    pid = int(found.group(1))
    try:
        assert frames[-1]["error"]["code"] == code
        # The stream's end reaches the client first; the kill follows the grace period.
        assert await eventually(lambda: dead(pid), KILL_GRACE + 2), "the grandchild outlived the kill"
        assert await gone(marker, within=1) and await eventually(lambda: released(adaptor_of(relay), cli_tmp), 1)
    finally:
        if not dead(pid):
            os.kill(pid, signal.SIGKILL)


# --- secrets in the CLI's output --------------------------------------------------------

@pytest.mark.parametrize("mode, stream", [("leaky-result", False), ("leaky-status", False), ("leaky-stream", True),
                                          ("leaky-result", True)])
async def test_the_channel_key_reaches_neither_client_nor_log(make_relay: MakeRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, stream: bool) -> None:
    relay = await make_relay(stand_in_config(tmp_path, mode, uuid.uuid4().hex, api_key=LEAKY_KEY))
    caplog.set_level("DEBUG")
    if stream:
        resp, text = await post(relay, {"model": "cli", "messages": HELLO}, stream=True)
        shown = text + json.dumps(dict(resp.headers))
        assert "error" in json.loads(sse_frames(text)[-1][1]) if resp.status == 200 else resp.status >= 400
    else:
        r, body = await post(relay, {"model": "cli", "messages": HELLO})
        assert r.status >= 400
        validate_error(body)
        shown = json.dumps(body) + json.dumps(dict(r.headers))
    assert LEAKY_KEY not in shown
    assert LEAKY_KEY not in caplog.text
    if mode == "leaky-result":
        assert "x-api-key [redacted]" in caplog.text  # the stderr tail is logged, scrubbed


async def test_the_stderr_tail_is_cut_after_scrubbing(cli_tmp: Path) -> None:
    # The key straddles where an 8 KB tail would begin: cut first, a piece of it would stay.
    text = "A" * 100 + LEAKY_KEY + "B" * (STDERR_TAIL - 10)
    code = f"import sys; sys.stderr.write({text!r}); sys.stderr.flush()"
    proc = await CliProcess.spawn([sys.executable, "-c", code], {"PATH": os.environ["PATH"]}, b"")
    try:
        while await proc.read():
            pass
    finally:
        await proc.close()
    tail = proc.stderr_tail(Redactor([LEAKY_KEY]))
    assert tail.endswith("B" * 100) and not any(LEAKY_KEY[-i:] in tail for i in range(6, len(LEAKY_KEY)))


# --- slots and directories are always released ---------------------------------------------

async def test_a_cli_that_never_reads_stdin_times_out_and_releases(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path) -> None:
    relay = await make_relay(stand_in_config(tmp_path, "noread", uuid.uuid4().hex, max_concurrent=1,
                                             timeout="{first_byte: 1, idle: 1, total: 10}"))
    big = [{"role": "user", "content": "x" * (1024 * 1024)}]  # far more than a pipe buffers
    r, body = await asyncio.wait_for(post(relay, {"model": "cli", "messages": big}), 15)
    assert r.status == 504 and body["error"]["code"] == "upstream_timeout"
    assert released(adaptor_of(relay), cli_tmp)


async def test_cancelled_before_the_first_byte_releases_everything(tmp_path: Path, cli_tmp: Path) -> None:
    marker = uuid.uuid4().hex
    adaptor = direct_adaptor(stand_in_config(tmp_path, "silent", marker, max_concurrent=1))
    task = asyncio.create_task(adaptor.open_stream(call()))
    for _ in range(100):
        if processes(marker):
            break
        await asyncio.sleep(0.05)
    assert processes(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert released(adaptor, cli_tmp) and not processes(marker)


async def test_a_client_gone_mid_stream_releases_everything(make_relay: MakeRelay, tmp_path: Path, cli_tmp: Path) -> None:
    marker = uuid.uuid4().hex
    relay = await make_relay(stand_in_config(tmp_path, "slow", marker, max_concurrent=1))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/chat/completions", json={"model": "cli", "messages": HELLO, "stream": True},
                            headers={"Authorization": f"Bearer {ACME_KEY}"})
        await resp.content.readuntil(b"\n\n")
        resp.close()
    assert await gone(marker)
    assert await eventually(lambda: released(adaptor_of(relay), cli_tmp), 2)
