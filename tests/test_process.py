"""A real `relay serve` process: drain on SIGTERM, reload on SIGHUP and `relay reload`."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp
import pytest

from .proc import ROOT, RelayProcess
from .support import scrape, value

KEY = "sk-proc-test"
ADMIN = "adm-proc-test"
CONFIG = f"""\
server:
  admin_key: {ADMIN}
  drain_seconds: 10
tenants:
  - name: acme
    keys: [{KEY}]
channels:
  - name: slow
    type: mock
    models: [slow]
    stream_chunks: 6
    chunk_delay: 0.25
"""
EXTRA = """\
  - name: newco
    keys: [sk-newco]
    models: [extra-model]
"""
EXTRA_CHANNEL = """\
  - name: extra
    type: mock
    models: [extra-model]
"""


async def ask(url: str, key: str, model: str) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]},
                          headers={"Authorization": f"Bearer {key}"}) as r:
            await r.read()
            return r.status


async def start_stream(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    resp = await session.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                              json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    await resp.content.readuntil(b"\n\n")  # the stream is under way
    return resp


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(CONFIG)
    return path


async def test_sigterm_drains_in_flight_streams_then_exits_0(config_file):
    relay = RelayProcess(config_file)
    try:
        async with aiohttp.ClientSession() as s:
            resp = await start_stream(s, relay.url)
            relay.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as fresh:
                    await fresh.get(relay.url + "/healthz")
            rest = (await resp.content.read()).decode()
        assert rest.endswith("data: [DONE]\n\n")  # the in-flight stream completed
        assert await asyncio.to_thread(relay.proc.wait, 15) == 0
        assert "draining" in relay.log
    finally:
        relay.stop()


async def test_sighup_reload_and_relay_reload(config_file):
    relay = RelayProcess(config_file)
    try:
        assert await ask(relay.url, "sk-newco", "extra-model") == 401
        async with aiohttp.ClientSession() as s:
            resp = await start_stream(s, relay.url)
            config_file.write_text(CONFIG.replace("channels:\n", EXTRA + "channels:\n") + EXTRA_CHANNEL)
            relay.signal(signal.SIGHUP)
            for _ in range(50):
                if await ask(relay.url, "sk-newco", "extra-model") == 200:
                    break
                await asyncio.sleep(0.1)
            assert await ask(relay.url, "sk-newco", "extra-model") == 200
            assert (await resp.content.read()).decode().endswith("data: [DONE]\n\n")  # unaffected
        assert "config reloaded" in relay.log and "+extra" in relay.log and "+newco" in relay.log

        # A broken file is refused with check-config's errors; the running config stays.
        config_file.write_text(CONFIG.replace("type: mock", "type: mokc"))
        relay.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert "config reload rejected" in relay.log and "'mokc' is not an installed channel type" in relay.log
        assert await ask(relay.url, "sk-newco", "extra-model") == 200
        assert await ask(relay.url, KEY, "slow") == 200

        # `relay reload` goes through the admin endpoint and shows the same errors.
        cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "relay", "reload", "-c", str(config_file), "--url", relay.ops_url],
                                      capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert cli.returncode == 1 and "'mokc' is not an installed channel type" in cli.stderr
        config_file.write_text(CONFIG)  # back to the first config, with its admin key
        cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "relay", "reload", "-c", str(config_file), "--url", relay.ops_url],
                                      capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert cli.returncode == 0 and cli.stdout.strip() == "reloaded"
        assert await ask(relay.url, "sk-newco", "extra-model") == 401
        m = await scrape(relay.ops_url)
        assert value(m, "relay_config_reloads_total", result="success") == 2
        assert value(m, "relay_config_reloads_total", result="failure") == 1
    finally:
        relay.stop()
