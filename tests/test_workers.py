"""`relay serve --workers 2`: one port, summed metrics, global limits, signals reach all."""
from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from .proc import RelayProcess
from .support import scrape, value

KEY = "sk-workers"
CONFIG = f"""\
server: {{admin_key: adm}}
store: {{url: "sqlite:///./relay.db"}}
tenants:
  - name: acme
    keys: [{KEY}]
    limits: {{rpm: 10}}
channels:
  - name: demo
    type: mock
    models: [demo]
"""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


async def ask(url: str, key: str = KEY) -> int:
    async with aiohttp.ClientSession() as s:  # a new connection each time: any worker may take it
        async with s.post(url + "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": "x"}]},
                          headers={"Authorization": f"Bearer {key}"}) as r:
            await r.read()
            return r.status


async def test_two_workers_share_port_limits_metrics_and_signals(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(CONFIG)
    relay = RelayProcess(path, args=("--workers", "2"))
    try:
        for _ in range(50):
            if len(children(relay.proc.pid)) == 2 and await _all_up(relay.url):
                break
            await asyncio.sleep(0.1)
        assert len(children(relay.proc.pid)) == 2
        statuses = [await ask(relay.url) for _ in range(16)]
        assert statuses.count(200) == 10 and statuses.count(429) == 6  # one rpm limit, not one per worker
        m = await scrape(relay.ops_url)  # any worker answers on the shared ops port, with the sum
        assert value(m, "relay_requests_total", tenant="acme", model="demo", channel="demo", api="chat", status="200") == 10
        assert value(m, "relay_rate_limited_total", tenant="acme", limit="requests") == 6
        async with aiohttp.ClientSession() as s:
            async with s.get(relay.url + "/metrics") as r:
                assert r.status == 404  # not on the public port

        path.write_text(CONFIG.replace("tenants:\n", "tenants:\n  - name: newco\n    keys: [sk-newco]\n"))
        relay.signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert [await ask(relay.url, "sk-newco") for _ in range(12)] == [200] * 12  # every worker reloaded

        workers = children(relay.proc.pid)
        relay.signal(signal.SIGTERM)
        assert await asyncio.to_thread(relay.proc.wait, 30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        relay.stop()


async def _all_up(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/healthz") as r:
                return r.status == 200
    except aiohttp.ClientError:
        return False


def test_a_second_instance_on_a_taken_port_fails_instead_of_sharing_it(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "relay.yaml"
    config.write_text(CONFIG)
    first = RelayProcess(config)
    try:
        for workers in ("1", "2"):
            second = subprocess.run([sys.executable, "-m", "relay", "serve", "-c", str(config), "--port", str(first.port),
                                     "--workers", workers], cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert second.returncode == 1 and f"cannot listen on 127.0.0.1:{first.port}" in second.stderr, second.stderr
    finally:
        first.stop()
