"""Helpers for the claude_cli channel's tests: channel configs for the real CLI and the
stand-in, a private temp root, and process accounting through /proc."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.appkeys import RUNTIME
from relay_adaptors.claude_cli import ClaudeCliAdaptor

from ..proc import ROOT
from . import ACME_KEY

CLAUDE = Path(os.environ.get("RELAY_TEST_CLAUDE", ROOT / ".tools" / "node_modules" / ".bin" / "claude"))
STAND_IN = Path(__file__).parents[1] / "fakes" / "fake_claude.py"
GERMAN = "Grüß dich! Hier ist ein Kaffee ☕ und ein 🎉."
CLI_KEY = "sk-ant-cli-channel-key"
HELLO = [{"role": "system", "content": "Answer in German."}, {"role": "user", "content": "hello"}]


def cli_config(channel: str) -> str:
    return f"""\
store: {{url: memory://}}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
{channel}"""


def real_cli_config(anthropic_url: str, *, max_concurrent: int = 4, queue_timeout: float = 5,
                    timeout: str = "{first_byte: 20, idle: 5, total: 60}") -> str:
    assert CLAUDE.exists(), f"the claude CLI is missing at {CLAUDE}; `make test` installs it"
    return cli_config(f"""\
  - name: cli
    type: claude_cli
    command: {CLAUDE}
    api_key: {CLI_KEY}
    base_url: {anthropic_url}
    max_concurrent: {max_concurrent}
    queue_timeout: {queue_timeout}
    timeout: {timeout}
    models: {{cli-text: text, cli-thinking: thinking, cli-max: max_tokens, cli-429: status-429, cli-529: status-529,
             cli-500: status-500, cli-400: status-400, cli-hang: hang-headers, cli-hang-mid: hang-midstream, cli-paced: paced-300}}
""")


def stand_in_config(tmp_path: Path, mode: str, marker: str, *, max_concurrent: int = 4, queue_timeout: float = 5,
                    timeout: str = "{first_byte: 5, idle: 5, total: 30}", command: str | None = None,
                    api_key: str | None = None) -> str:
    wrapper = tmp_path / "claude-stand-in"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {STAND_IN} \"$@\"\n")
    wrapper.chmod(0o755)
    key = f"\n    api_key: {api_key}" if api_key else ""
    return cli_config(f"""\
  - name: fake-cli
    type: claude_cli
    command: {command or wrapper}{key}
    max_concurrent: {max_concurrent}
    queue_timeout: {queue_timeout}
    timeout: {timeout}
    extra_args: [--fake-mode, {mode}, --marker, {marker}]
    models: [cli]
""")


def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temp root, where the adaptor makes the processes' directories: other
    runs on the machine cannot be mistaken for ours, and what is left behind can be seen."""
    root = tmp_path / "cli-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def processes(marker: str | Path) -> list[int]:
    """Living processes whose command line holds `marker`, or (for a directory) whose
    working directory is inside it."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd") if isinstance(marker, Path) else ""
        except OSError:
            continue
        if cwd.startswith(f"{marker}/") if isinstance(marker, Path) else str(marker).encode() in cmd:
            found.append(int(pid))
    return found


async def gone(marker: str | Path, within: float = 5.0) -> bool:
    for _ in range(int(within / 0.05)):
        if not processes(marker):
            return True
        await asyncio.sleep(0.05)
    return False


async def post(relay: Any, body: dict[str, Any], stream: bool = False) -> tuple[Any, Any]:
    """A chat completion: (response, parsed body), or (response, raw SSE text) when streaming."""
    resp, text = await relay.raw_stream("/v1/chat/completions", {**body, "stream": stream}) if stream else (None, None)
    if stream:
        return resp, text
    r = await relay.post("/v1/chat/completions", body)
    return r, json.loads(await r.read())


def adaptor_of(relay: Any) -> ClaudeCliAdaptor:
    (_, adaptor), = relay.server.app[RUNTIME].current.channels
    assert isinstance(adaptor, ClaudeCliAdaptor)
    return adaptor


async def eventually(check: Callable[[], bool], within: float) -> bool:
    for _ in range(int(within / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


class RecordingCli:
    """A wrapper around the real CLI that records each run's argv, CLAUDE_CONFIG_DIR, working
    directory and stdin (in a directory of its own per run), then runs the real binary on
    that stdin (through a pipe: given a file, the CLI reads nothing): what the adaptor started, seen from the outside."""

    def __init__(self, tmp_path: Path):
        assert CLAUDE.exists(), f"the claude CLI is missing at {CLAUDE}; `make test` installs it"
        self.log = tmp_path / "cli-runs"
        self.log.mkdir()
        self.command = tmp_path / "claude-recorded"
        self.command.write_text(f"""#!/bin/sh
d=$(mktemp -d {self.log}/run-XXXXXXXX)
printf '%s\\0' "$@" > "$d/argv"
printf '%s' "${{CLAUDE_CONFIG_DIR-}}" > "$d/config_dir"
pwd > "$d/cwd"
cat > "$d/stdin"
cat "$d/stdin" | {CLAUDE} "$@"
""")
        self.command.chmod(0o755)

    def runs(self) -> list[dict[str, Any]]:
        """Every run so far, oldest first: argv (list), config_dir, cwd, stdin (the messages sent)."""
        found = []
        for d in sorted(self.log.iterdir(), key=lambda p: (p / "argv").stat().st_mtime_ns):
            found.append({"argv": (d / "argv").read_bytes().decode().split("\0")[:-1],
                          "config_dir": (d / "config_dir").read_text(), "cwd": (d / "cwd").read_text().strip(),
                          "stdin": [json.loads(line) for line in (d / "stdin").read_text().splitlines() if line]})
        return found


def sessions_cli_config(anthropic_url: str, command: Path, sessions_dir: Path | None, *, sessions: bool = True,
                        ttl: float | None = None) -> str:
    """A claude_cli channel on the real CLI (through `command`) that keeps sessions per tenant."""
    extra = f"\n    sessions_dir: {sessions_dir}" if sessions_dir else ""
    extra += f"\n    sessions_ttl: {ttl}" if ttl else ""
    return cli_config(f"""\
  - name: cli
    type: claude_cli
    command: {command}
    api_key: {CLI_KEY}
    base_url: {anthropic_url}
    timeout: {{first_byte: 20, idle: 5, total: 60}}
    sessions: {str(sessions).lower()}{extra}
    models: {{cli-text: text}}
""")
