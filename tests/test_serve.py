"""`relay serve` as a real process on the example config: the README's first command."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from .spec import validate

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def example_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "-c", str(ROOT / "config.example.yaml"), "--port", str(port),
         "--ops-listen", f"127.0.0.1:{free_port()}"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={**os.environ, "RELAY_DEMO_KEY": "sk-demo"},
    )
    line = proc.stderr.readline()  # the startup line comes once the socket is bound
    yield port, line
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)


async def test_example_config_serves_chat_with_no_api_keys(example_server):
    port, startup = example_server
    assert f"listening on http://127.0.0.1:{port}" in startup and "demo(mock)" in startup and "models=[demo" in startup
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-demo"}
    body = {"model": "demo", "messages": [{"role": "user", "content": "hello"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers=headers) as resp:
            assert resp.status == 200
            answer = await resp.json()
        validate("CreateChatCompletionResponse", answer)
        assert "hello" in answer["choices"][0]["message"]["content"]
        async with s.post(url, json={**body, "stream": True}, headers=headers) as resp:
            text = (await resp.read()).decode()
    assert text.endswith("data: [DONE]\n\n")
    pieces = [json.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: {")]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in pieces) == answer["choices"][0]["message"]["content"]
