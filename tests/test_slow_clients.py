"""Client connection limits: slowloris headers, stalled bodies and idle keep-alive
connections are closed within the configured timeouts, excess connections are refused at
once, and the server keeps answering everyone else meanwhile.

Real sockets on loopback against the app run as `relay serve` runs it (GuardedRunner). The
timeouts are small (0.5 s) so the test is quick; the bounds asserted are generous multiples.
"""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from .spec import validate_error
from .support import base_config

LIMITS = "server:\n  header_read_timeout: 0.5\n  body_read_timeout: 0.5\n  keepalive_timeout: 0.5\n  max_connections: 200\n"


async def slowloris(host: str, port: int, stop: asyncio.Event) -> float:
    """Dribbles header bytes forever; returns how long the server let it live."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            writer.write(b"X-a: b\r\n")
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    break  # closed by the server
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def stalled_body(host: str, port: int) -> tuple[float, bytes]:
    """Complete headers, a tenth of the declared body, then nothing."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-acme-0123456789\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\": ")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    except ConnectionError:
        answer = b""
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def test_slowloris_and_stalled_bodies_are_closed_while_healthz_answers(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url).replace("server:\n", LIMITS))
    host, port = relay.server.host, relay.server.port
    stop = asyncio.Event()
    loris = [asyncio.create_task(slowloris(host, port, stop)) for _ in range(30)]
    stalled = [asyncio.create_task(stalled_body(host, port)) for _ in range(30)]
    await asyncio.sleep(0.1)  # every hostile connection is open
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            t0 = time.monotonic()
            async with s.get(relay.url + "/healthz") as resp:
                assert resp.status == 200
            assert time.monotonic() - t0 < 0.25  # not queued behind the hostile connections
    try:
        lived = await asyncio.wait_for(asyncio.gather(*loris), 5)
        results = await asyncio.wait_for(asyncio.gather(*stalled), 5)
    finally:
        stop.set()
    assert max(lived) < 2.0, lived  # header_read_timeout 0.5 s: closed although bytes kept coming
    for took, answer in results:
        assert took < 2.0
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]  # told why, then closed
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        validate_error(body)
        assert body["error"]["code"] == "request_timeout"
    async with aiohttp.ClientSession() as s, s.get(relay.url + "/healthz") as resp:
        assert resp.status == 200


async def test_idle_keepalive_connection_is_closed(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url).replace("server:\n", LIMITS))
    reader, writer = await asyncio.open_connection(relay.server.host, relay.server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), 5)  # the body, then EOF when the server closes
    assert b"ok" in rest and time.monotonic() - started < 2.0
    writer.close()


async def test_connections_past_the_cap_are_refused_at_once(make_relay, fake_openai):
    config = base_config(fake_openai.url).replace("server:\n", "server:\n  max_connections: 5\n  header_read_timeout: 30\n")
    relay = await make_relay(config)
    host, port = relay.server.host, relay.server.port
    held = [await asyncio.open_connection(host, port) for _ in range(5)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection(host, port)
    answer = await asyncio.wait_for(reader.read(), 2)  # answered and closed without a request
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503")
    refused = json.loads(answer.partition(b"\r\n\r\n")[2])
    validate_error(refused)
    assert refused["error"]["code"] == "too_many_connections"
    for _, w in held:
        w.close()
    await asyncio.sleep(0.1)  # the server sees the closes
    async with aiohttp.ClientSession() as s, s.get(relay.url + "/healthz") as resp:
        assert resp.status == 200  # slots are freed when connections close


async def test_relay_serve_applies_the_limits(tmp_path):
    """The real `relay serve` process runs with the guard, not only the test server."""
    import os
    import subprocess
    import sys

    from .support import free_port

    port = free_port()
    config = tmp_path / "relay.yaml"
    config.write_text("server:\n  header_read_timeout: 0.5\n  max_connections: 3\n  ops_listen: null\nstore: {url: memory://}\n"
                      "tenants: [{name: t, keys: [sk-serve-test-key]}]\nchannels: [{name: demo, type: mock, models: [demo]}]\n")
    proc = subprocess.Popen([sys.executable, "-m", "relay", "serve", "-c", str(config), "--port", str(port)],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert "listening" in proc.stderr.readline()
        stop = asyncio.Event()
        lived = await asyncio.wait_for(slowloris("127.0.0.1", port, stop), 5)
        assert lived < 2.0
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(reader.read(), 2)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
