"""Instructions per request of Relay and of the bare proxy on each bench row, counted by
valgrind's callgrind: the figure this shared VM cannot move. CPU time per request moves by
±20% between runs of the same code here (steal time, cache and frequency effects); the
instructions a request executes move by about 2%, so a change of a few percent is visible in
one run. They leave out the kernel's work (system calls), which both sides do alike.

    python -m tests.bench.instructions [SUBSTRING ...] [--requests N] [--limited] [--store redis] [--baseline DIR]

Each side runs under callgrind with instrumentation off while it starts and warms up; then,
per row, the counters are zeroed, exactly N requests are sent (16 at a time, all completed),
and the counters are dumped: instructions / N. Every thread of the process is counted (the
ledger's SQLite thread too). `--baseline DIR` counts Relay from DIR too (the relay,
relay_adaptors and relay_config packages of another commit, as for tests.bench.cpu).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from ..proc import ROOT, free_port
from ..redis_server import RedisServer
from .stack import KEY, LIMITED_KEY, ROWS, body_for, relay_config, start_nginx, stop, wait_port

CONCURRENCY = 16


def under_callgrind(out: Path, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), env=env)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def drive(url: str, body: dict, n: int, key: str) -> None:
    """Exactly `n` requests, CONCURRENCY at a time, each read to its end."""
    left = n

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with s.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: {r.status}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(*(worker(s) for _ in range(CONCURRENCY)))


def count(pid: int, out: Path, url: str, body: dict, n: int, key: str = KEY) -> float:
    """Instructions per request of process `pid` over `n` requests to `url`."""
    asyncio.run(drive(url, body, CONCURRENCY * 2, key))  # connections open, code paths warm
    control(pid, "-z")
    asyncio.run(drive(url, body, n, key))
    before = set(out.parent.glob(out.name + "*"))
    control(pid, "-d")
    dumped = _wait_for_new(out, before)
    total = next(int(line.split()[1]) for line in dumped.read_text().splitlines() if line.startswith("summary:"))
    return total / n


def _wait_for_new(out: Path, before: set[Path]) -> Path:
    import time

    for _ in range(200):
        new = set(out.parent.glob(out.name + "*")) - before
        if new:
            path = max(new, key=lambda p: p.stat().st_mtime)
            time.sleep(0.2)  # written whole
            return path
        time.sleep(0.05)
    raise RuntimeError("callgrind wrote no dump")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="*")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--limited", action="store_true", help="also count the tenant with rpm/tpm/concurrency/budget limits")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    ap.add_argument("--baseline", type=Path)
    args = ap.parse_args()
    print(measure(args.rows, args.requests, args.limited, args.store, args.baseline))


def measure(picked: list[str], requests: int, limited: bool, store: str, baseline: Path | None = None) -> str:
    rows = [r for r in ROWS if not picked or any(s in r[0] for s in picked)]
    tmp = Path(tempfile.mkdtemp(prefix="relay-instructions-"))
    tmp.chmod(0o755)
    nginx, nginx_port = start_nginx(tmp)
    redis = RedisServer() if store == "redis" else None
    if redis is not None:
        subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    config = relay_config(tmp, nginx_port, free_port(), store=redis.url if redis is not None else None)
    routes = {f"{path} {model}": upstream for _, path, model, _, upstream in ROWS}
    bare_port, port = free_port(), free_port()
    bare_out, relay_out = tmp / "bare.callgrind", tmp / "relay.callgrind"
    bare = under_callgrind(bare_out, [sys.executable, "-m", "tests.bench.bare", str(bare_port), f"http://127.0.0.1:{nginx_port}",
                                      json.dumps(routes)], tmp / "bare.valgrind.log")
    relay = under_callgrind(relay_out, [sys.executable, "-m", "relay", "serve", "-c", str(config), "--port", str(port)],
                            tmp / "relay.valgrind.log")
    base = None
    if baseline is not None:
        base_port = free_port()
        (tmp / "base").mkdir()
        base_config = relay_config(tmp / "base", nginx_port, free_port(), store=redis.url if redis is not None else None)
        base_out = tmp / "base.callgrind"
        base = under_callgrind(base_out, [sys.executable, "-m", "relay", "serve", "-c", str(base_config), "--port", str(base_port)],
                               tmp / "base.valgrind.log", env={**os.environ, "PYTHONPATH": str(baseline)})
    lines = [f"store: {store}; instructions per request (callgrind, {requests} requests per figure, {CONCURRENCY} at a time)",
             "| scenario | Relay | bare proxy | bare / Relay |" + (" limited Relay | unlimited / limited |" if limited else "")
             + (" baseline Relay |" if base else ""),
             "|---|---|---|---|" + ("---|---|" if limited else "") + ("---|" if base else "")]
    try:
        wait_port(bare_port, timeout=300)
        wait_port(port, timeout=300)
        control(bare.pid, "-i", "on")
        control(relay.pid, "-i", "on")
        if base is not None:
            wait_port(base_port, timeout=300)
            control(base.pid, "-i", "on")
        for name, path, model, stream, _ in rows:
            body = body_for(path, model, stream)
            r = count(relay.pid, relay_out, f"http://127.0.0.1:{port}{path}", body, requests)
            b = count(bare.pid, bare_out, f"http://127.0.0.1:{bare_port}{path}", body, requests)
            line = f"| {name} | {r / 1e3:.0f} k | {b / 1e3:.0f} k | {b / r:.2f} |"
            if limited:
                lim = count(relay.pid, relay_out, f"http://127.0.0.1:{port}{path}", body, requests, LIMITED_KEY)
                line += f" {lim / 1e3:.0f} k | {r / lim:.2f} |"
            if base is not None:
                line += f" {count(base.pid, base_out, f'http://127.0.0.1:{base_port}{path}', body, requests) / 1e3:.0f} k |"
            lines.append(line)
            print(line, file=sys.stderr, flush=True)
    finally:
        stop(relay)
        if base is not None:
            stop(base)
        stop(bare)
        stop(nginx)
        if redis is not None:
            redis.stop()
    return "\n".join(lines)


if __name__ == "__main__":
    main()
