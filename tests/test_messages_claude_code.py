"""The real Claude Code CLI (pinned, `claude -p`) runs a whole Bash tool loop through Relay:
once on an anthropic channel (passthrough), once on an openai chat-only channel (the bridge)."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from .cli_support import CLAUDE
from .fakes.tool_loop import ToolLoopUpstream
from .support import ACME_KEY, serve_fake, store_of

PROMPT = "Run the shell command `echo relay-$((6*7))` with the Bash tool and tell me exactly what it printed."


def loop_config(url: str) -> str:
    return f"""\
store: {{url: memory://}}
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
    models: ["cc-*"]
channels:
  - name: claude
    type: anthropic
    base_url: {url}
    api_key: sk-ant-loop-upstream
    models: {{cc-anthropic: claude-sonnet-4-5}}
  - name: chat-only
    type: openai
    base_url: {url}/v1
    api_key: sk-loop-upstream
    models: {{cc-openai: gpt-4.1}}
"""


async def run_claude(base_url: str, model: str, tmp_path: Path) -> dict:
    assert CLAUDE.exists(), f"the claude CLI is missing at {CLAUDE}; `make test` installs it"
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home),
        "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": ACME_KEY,
        "ANTHROPIC_SMALL_FAST_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "CLAUDE_CODE_MAX_RETRIES": "0", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        str(CLAUDE), "-p", PROMPT, "--allowedTools", "Bash", "--model", model, "--output-format", "json",
        cwd=work, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"claude exited {proc.returncode}: {out.decode()[-2000:]} {err.decode()[-2000:]}"
    return json.loads(out)


@pytest.mark.parametrize("model, channel, path", [("cc-anthropic", "claude", "/v1/messages"),
                                                  ("cc-openai", "chat-only", "/v1/chat/completions")])
async def test_claude_code_tool_loop_through_relay(make_relay, aiohttp_server, tmp_path, model, channel, path):
    upstream = await serve_fake(ToolLoopUpstream(), aiohttp_server)
    relay = await make_relay(loop_config(upstream.url))
    result = await run_claude(relay.url, model, tmp_path)
    assert result["is_error"] is False, result
    assert "relay-42" in result["result"]  # the shell computed it; neither fake knows it
    calls = [r for r in upstream.requests if r.path == path]
    # Exactly the two streamed turns: a broken stream would show as a third, non-streaming call.
    assert len(upstream.requests) == len(calls) == 2 and all(r.body["stream"] for r in calls), \
        [(r.path, r.body.get("stream")) for r in upstream.requests]
    if path == "/v1/messages":
        results = [b for b in calls[1].body["messages"][-1]["content"] if b.get("type") == "tool_result"]
        assert calls[0].body["model"] == "claude-sonnet-4-5" and calls[0].body.get("thinking") is not None
    else:
        results = [m for m in calls[1].body["messages"] if m["role"] == "tool"]
        assert calls[1].body["messages"][-2]["tool_calls"][0]["function"]["name"] == "Bash"
        assert calls[0].body["messages"][0]["role"] == "system" and len(calls[0].body["tools"]) > 10
    assert len(results) == 1 and "relay-42" in json.dumps(results[0])
    rows = [(r.model, r.channel, r.api, r.status) for r in store_of(relay).ledger]
    assert rows == [(model, channel, "messages", 200)] * 2
