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
from typing import Any

import aiohttp

from ..proc import ROOT, free_port
from ..redis_server import RedisServer
from .stack import KEY, LIMITED_KEY, ROWS, body_for, relay_config, start_nginx, stop, wait_port

CONCURRENCY = 16


def under_callgrind(out: Path, argv: list[str], log: Path, env: dict[str, str] | None = None,
                    cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
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
    rows = measure(args.rows, args.requests, args.limited, args.store, args.baseline)
    print(f"instructions per request (callgrind, {args.requests} requests per figure, {CONCURRENCY} at a time), store {args.store}")
    print(table(rows))


def measure(picked: list[str], requests: int, limited: bool, store: str, baseline: Path | None = None) -> list[dict[str, Any]]:
    """Per row: instructions per request of Relay, the bare proxy, and (asked for) Relay with
    the limited tenant's key and Relay from `baseline`."""
    rows = [r for r in ROWS if not picked or any(s in r[0] for s in picked)]
    tmp = Path(tempfile.mkdtemp(prefix="relay-instructions-"))
    tmp.chmod(0o755)
    nginx, nginx_port = start_nginx(tmp)
    redis = RedisServer() if store == "redis" else None
    if redis is not None:
        subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    store_url = redis.url if redis is not None else None
    routes = {f"{path} {model}": upstream for _, path, model, _, upstream in ROWS}
    bare_port, port = free_port(), free_port()
    sides = {  # name -> (process, dump file, port)
        "bare": (under_callgrind(tmp / "bare.callgrind", [sys.executable, "-m", "tests.bench.bare", str(bare_port),
                                 f"http://127.0.0.1:{nginx_port}", json.dumps(routes)], tmp / "bare.valgrind.log"),
                 tmp / "bare.callgrind", bare_port),
        "relay": (under_callgrind(tmp / "relay.callgrind", [sys.executable, "-m", "relay", "serve", "-c",
                                  str(relay_config(tmp, nginx_port, free_port(), store=store_url)), "--port", str(port)],
                                  tmp / "relay.valgrind.log"), tmp / "relay.callgrind", port),
    }
    if baseline is not None:
        base_port = free_port()
        (tmp / "base").mkdir()
        argv = [sys.executable, "-m", "relay", "serve", "-c", str(relay_config(tmp / "base", nginx_port, free_port(), store=store_url)),
                "--port", str(base_port)]
        # Not started in the repository: `python -m` puts the working directory first on the
        # path, and its relay package would shadow the baseline's.
        sides["baseline"] = (under_callgrind(tmp / "base.callgrind", argv, tmp / "base.valgrind.log",
                                             env={**os.environ, "PYTHONPATH": str(baseline.resolve())}, cwd=tmp / "base"),
                             tmp / "base.callgrind", base_port)
    out: list[dict[str, Any]] = []
    try:
        for proc, _, side_port in sides.values():
            wait_port(side_port, timeout=300)
            control(proc.pid, "-i", "on")

        def on(side: str, path: str, body: dict, key: str = KEY) -> float:
            proc, dump, side_port = sides[side]
            return count(proc.pid, dump, f"http://127.0.0.1:{side_port}{path}", body, requests, key)

        for name, path, model, stream, _ in rows:
            body = body_for(path, model, stream)
            row: dict[str, Any] = {"scenario": name, "store": store, "relay": on("relay", path, body), "bare": on("bare", path, body)}
            if limited:
                row["limited"] = on("relay", path, body, LIMITED_KEY)
            if baseline is not None:
                row["baseline"] = on("baseline", path, body)
            out.append(row)
            print(line(row), file=sys.stderr, flush=True)
    finally:
        for proc, _, _ in sides.values():
            stop(proc)
        stop(nginx)
        if redis is not None:
            redis.stop()
    return out


def line(row: dict[str, Any]) -> str:
    cells = [row["scenario"], f"{row['relay'] / 1e3:.0f} k", f"{row['bare'] / 1e3:.0f} k", f"{row['bare'] / row['relay']:.2f}"]
    if "limited" in row:
        cells += [row["store"], f"{row['limited'] / 1e3:.0f} k", f"{row['relay'] / row['limited']:.2f}"]
    if "baseline" in row:
        cells.append(f"{row['baseline'] / 1e3:.0f} k")
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict[str, Any]]) -> str:
    head = ["scenario", "Relay", "bare proxy", "bare / Relay"]
    if rows and "limited" in rows[0]:
        head += ["store", "limited tenant", "unlimited / limited"]
    if rows and "baseline" in rows[0]:
        head.append("baseline Relay")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *(line(r) for r in rows)])


if __name__ == "__main__":
    main()
