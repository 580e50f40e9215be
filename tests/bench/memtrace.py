"""Where the bytes of an open stream go: Relay's app in this process (tracemalloc on), N
streams held through it by tests.bench.hold, and the difference between 0 and N open streams
grouped by source line (and the top tracebacks), plus object counts by type.

    python -m tests.bench.memtrace [N] [--bare] [--prompt=CHARS]    # N defaults to 1000

`--bare` traces the bare proxy's handler instead (tests/bench/bare.py's floor, in process).
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

from ..proc import ROOT, free_port
from .memory import PATH, WARMUP
from .stack import KEY, relay_config, rss_kb, wait_port

FRAMES = 12


async def hold(url: str, n: int, seconds: float, prompt: int = 0) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec("taskset", "-c", "1", sys.executable, "-m", "tests.bench.hold", url + PATH, str(n), KEY,
                                                str(seconds), str(prompt), cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    return proc, json.loads(await proc.stdout.readline())


def census() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def bare_app(paced: int) -> web.Application:
    target = f"http://127.0.0.1:{paced}/slow/v1/chat/completions"

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        resp = web.StreamResponse()
        async with request.app["session"].post(target, data=body, headers={"Content-Type": "application/json"}) as up:
            resp.set_status(up.status)
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar())
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/{tail:.*}", proxy)
    return app


async def run(n: int, bare: bool, prompt: int) -> None:
    from relay.app import create_app
    from relay.connections import ClientLimits, GuardedRunner
    from relay_config.loader import load_config

    paced_port, port = free_port(), free_port()
    paced = await asyncio.create_subprocess_exec("taskset", "-c", "1", sys.executable, "-m", "tests.bench.paced", str(paced_port), cwd=ROOT)
    await asyncio.to_thread(wait_port, paced_port)
    tmp = Path(tempfile.mkdtemp(prefix="relay-memtrace-"))
    config = load_config(relay_config(tmp, free_port(), paced_port))
    if bare:
        runner: web.AppRunner = web.AppRunner(bare_app(paced_port), access_log=None)
    else:
        runner = GuardedRunner(create_app(config), ClientLimits.of(config.server), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    url = f"http://127.0.0.1:{port}"
    try:
        warm, _ = await hold(url, WARMUP, 0)
        await warm.wait()
        await asyncio.sleep(6)  # the bare handler notices a client gone at its next write (<= 5 s)
        gc.collect()
        rss0 = rss_kb(os.getpid())[0]
        before, types0 = tracemalloc.take_snapshot(), census()
        proc, held = await hold(url, n, 600, prompt)
        await asyncio.sleep(0.5)
        gc.collect()
        rss1 = rss_kb(os.getpid())[0]
        after, types1 = tracemalloc.take_snapshot(), census()
        opened = held["open"] or 1
        print(f"{held}; RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB: {(rss1 - rss0) / opened:.1f} KB per stream (tracemalloc on)")
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        after, before = after.filter_traces(keep), before.filter_traces(keep)
        total = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(f"\ntraced Python heap: {total / opened / 1024:.2f} KB per stream")
        print("\n== by file (bytes per stream, allocations per stream)")
        for s in after.compare_to(before, "filename")[:25]:
            print(f"{s.size_diff / opened:9.0f} {s.count_diff / opened:6.1f}  {s.traceback[0].filename}")
        print("\n== by line")
        for s in after.compare_to(before, "lineno")[:45]:
            fr = s.traceback[0]
            print(f"{s.size_diff / opened:9.0f} {s.count_diff / opened:6.1f}  {fr.filename}:{fr.lineno}")
        print("\n== top tracebacks")
        for s in after.compare_to(before, "traceback")[:12]:
            print(f"{s.size_diff / opened:9.0f} {s.count_diff / opened:6.1f}")
            for fr in list(s.traceback)[-6:]:
                print(f"            {fr.filename}:{fr.lineno}")
        print("\n== GC-tracked objects per stream, by type")
        for name, d in sorted(((k, types1[k] - types0.get(k, 0)) for k in types1), key=lambda kv: -kv[1])[:40]:
            if d / opened >= 0.5:
                print(f"{d / opened:6.2f}  {name}")
        proc.terminate()
        await proc.wait()
    finally:
        await runner.cleanup()
        paced.terminate()
        await paced.wait()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tracemalloc.start(FRAMES)
    import uvloop

    prompt = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--prompt=")), 0)
    uvloop.run(run(int(args[0]) if args else 1000, "--bare" in sys.argv, prompt))


if __name__ == "__main__":
    main()
