"""Holds N streams open through Relay (run as its own process): prints one JSON line when
every stream has its first chunk (or failed), keeps them open `hold` seconds, then exits.

    python -m tests.bench.hold URL N KEY HOLD [PROMPT_CHARS]   # PROMPT_CHARS: the user message's size (default: "hold")"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import aiohttp


async def one(session: aiohttp.ClientSession, url: str, key: str, ready: asyncio.Event, results: list, prompt: str = "hold") -> None:
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    try:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            if r.status != 200:
                results.append(False)
                return
            await r.content.readuntil(b"\n\n")
            results.append(True)
            await ready.wait()
    except Exception:
        results.append(False)


async def main(url: str, n: int, key: str, hold: float, prompt_chars: int = 0) -> None:
    prompt = ("lorem ipsum " * (prompt_chars // 12 + 1))[:prompt_chars] if prompt_chars else "hold"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: list[bool] = []
    done = asyncio.Event()
    started = time.monotonic()
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as s:
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(one(s, url, key, done, results, prompt)))
            if i % 250 == 249:
                await asyncio.sleep(0.05)  # a ramp, not a SYN flood
        while len(results) < n and time.monotonic() - started < 120:
            await asyncio.sleep(0.1)
        ok = sum(results)
        print(json.dumps({"open": ok, "errors": n - ok, "seconds": round(time.monotonic() - started, 2)}), flush=True)
        await asyncio.sleep(hold)
        done.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 0))
