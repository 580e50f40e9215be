"""Helpers for running the real, pinned Codex CLI (`codex exec`) against Relay: a private
CODEX_HOME whose config.toml names Relay as a custom Responses provider, and a run with no
network beyond loopback (its HTTP(S) proxy is a recorder that refuses everything)."""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..proc import ROOT

CODEX = Path(os.environ.get("RELAY_TEST_CODEX", ROOT / ".tools" / "node_modules" / ".bin" / "codex"))
KEY_ENV = "RELAY_API_KEY"
BUILTIN_KEY_ENV = "CODEX_API_KEY"  # the API key `codex exec` uses on its built-in openai provider


def codex_config(base_url: str, model: str, *, builtin_openai: bool = False) -> str:
    """config.toml as a user writes it for Relay: a custom Responses provider or, with
    `builtin_openai`, Codex's own openai provider moved to Relay. Everything else stays
    Codex's default except what would phone home (analytics, feedback, the update check,
    the plugin sync)."""
    provider = f"""\
openai_base_url = "{base_url}/v1"
""" if builtin_openai else f"""\
model_provider = "relay"

[model_providers.relay]
name = "Relay"
base_url = "{base_url}/v1"
env_key = "{KEY_ENV}"
wire_api = "responses"
"""
    return f"""\
model = "{model}"
check_for_update_on_startup = false
{provider}
[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false  # else it syncs the curated plugins from github.com and chatgpt.com at startup
"""


@dataclass
class CodexRun:
    returncode: int
    stdout: str
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        """The JSONL events of a `--json` run."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


async def run_codex(tmp_path: Path, base_url: str, proxy_url: str, key: str, model: str, prompt: str,
                    *extra: str, builtin_openai: bool = False, timeout: float = 60) -> CodexRun:
    assert CODEX.exists(), f"the codex CLI is missing at {CODEX}; `make test` installs it"
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    (home / ".codex" / "config.toml").write_text(codex_config(base_url, model, builtin_openai=builtin_openai))
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"), "TMPDIR": str(home),
        BUILTIN_KEY_ENV if builtin_openai else KEY_ENV: key, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        **{name: proxy_url for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")},
    }
    # Codex's exec defaults: no approvals, a read-only sandbox; the work dir is not a git repo.
    proc = await asyncio.create_subprocess_exec(
        str(CODEX), "exec", "--strict-config", "--skip-git-repo-check", "--color", "never", "-C", str(work), *extra, prompt,
        cwd=work, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return CodexRun(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())
