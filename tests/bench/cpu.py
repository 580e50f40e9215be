"""CPU time per request of Relay and of the bare proxy on each bench row: the figure that
stays put on a shared, noisy machine (wall-clock RPS does not). Each side is driven at a
fixed load by wrk and its process's user+system time is read from /proc before and after.

    python -m tests.bench.cpu [SUBSTRING ...] [--seconds N] [--profile DIR] [--limited] [--store redis]

SUBSTRING picks rows by name; --limited also drives Relay with the key of the tenant that has
every kind of limit (LIMITED_KEY), in the same alternating rounds: what limits cost per
request; --store redis runs Relay on a real redis-server (pinned to core 1 like nginx)
instead of the SQLite file; --profile records py-spy samples (raw, collapsed stacks) of
Relay per row; --baseline DIR also runs Relay from DIR (relay, relay_adaptors and
relay_config packages of another commit, e.g. from `git archive`) in the same rounds: a
before/after on the same load.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ..proc import ROOT, free_port
from ..redis_server import RedisServer
from . import wrk
from .__main__ import check
from .stack import KEY, LIMITED_KEY, ROWS, body_for, cpu_seconds, relay_config, start_nginx, start_relay, stop, wait_port

PY_SPY = next((p for p in (Path(sys.executable).parent / "py-spy", ROOT.parent.parent / "main/.venv/bin/py-spy",
                           Path("/work/main/.venv/bin/py-spy")) if p.exists()), None)


def per_request(pid: int, url: str, body: dict, seconds: int, connections: int, key: str = KEY) -> tuple[float, float]:
    """(CPU microseconds per request, RPS) of process `pid` while wrk drives `url` with `key`."""
    wrk.run(url, body, connections=connections, seconds=1, cpu="1", key=key)  # warm-up
    before = cpu_seconds(pid)
    r = wrk.run(url, body, connections=connections, seconds=seconds, cpu="1", key=key)
    used = cpu_seconds(pid) - before
    if r.errors:
        print(f"  {r.errors} errors on {url}", file=sys.stderr)
    return used / max(1, r.requests) * 1e6, r.rps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="*")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--limited", action="store_true", help="also measure the tenant with rpm/tpm/concurrency/budget limits")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    args = ap.parse_args()
    rows = [r for r in ROWS if not args.rows or any(s in r[0] for s in args.rows)]
    tmp = Path(tempfile.mkdtemp(prefix="relay-cpu-"))
    tmp.chmod(0o755)
    nginx, nginx_port = start_nginx(tmp)
    redis = None
    if args.store == "redis":
        redis = RedisServer()
        # An outside service like nginx: on the load generator's core, not competing with Relay's.
        subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    store_url = redis.url if redis is not None else None
    config = relay_config(tmp, nginx_port, free_port(), store=store_url)
    bare_port, port = free_port(), free_port()
    routes = {f"{path} {model}": upstream for _, path, model, _, upstream in ROWS}
    bare = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "tests.bench.bare", str(bare_port),
                             f"http://127.0.0.1:{nginx_port}", json.dumps(routes)], cwd=ROOT)
    wait_port(bare_port)
    relay = start_relay(config, port, "0")
    base = base_port = None
    if args.baseline:
        (tmp / "base").mkdir()
        base_port = free_port()
        base = start_relay(relay_config(tmp / "base", nginx_port, free_port(), store=store_url), base_port, "0", code=args.baseline)
    out = []
    try:
        for name, path, model, stream, _upstream in rows:
            body = body_for(path, model, stream)
            asyncio.run(check(f"http://127.0.0.1:{port}{path}", body))
            keys = (KEY, LIMITED_KEY) if args.limited else (KEY,)
            for key in keys if args.profile and PY_SPY else ():
                args.profile.mkdir(parents=True, exist_ok=True)
                stem = name.replace(",", "").replace(" ", "_").replace("(", "").replace(")", "").replace(":", "")
                svg = args.profile / (stem + ("_limited" if key == LIMITED_KEY else "") + f"_{args.store}.txt")
                spy = subprocess.Popen([str(PY_SPY), "record", "-r", "400", "-f", "raw", "-o", str(svg), "--pid", str(relay.pid),
                                        "-d", str(args.seconds + 2)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # Its own run: sampling slows the process it samples.
                per_request(relay.pid, f"http://127.0.0.1:{port}{path}", body, args.seconds, args.connections, key)
                spy.wait()
            # Alternating rounds, the least of each side: other load on the core only ever adds.
            relay_runs, limited_runs, bare_runs, base_runs, base_limited_runs = [], [], [], [], []
            for _ in range(args.rounds):
                relay_runs.append(per_request(relay.pid, f"http://127.0.0.1:{port}{path}", body, args.seconds, args.connections))
                if args.limited:
                    limited_runs.append(per_request(relay.pid, f"http://127.0.0.1:{port}{path}", body, args.seconds,
                                                    args.connections, LIMITED_KEY))
                if base is not None:
                    base_runs.append(per_request(base.pid, f"http://127.0.0.1:{base_port}{path}", body, args.seconds, args.connections))
                    if args.limited:
                        base_limited_runs.append(per_request(base.pid, f"http://127.0.0.1:{base_port}{path}", body, args.seconds,
                                                             args.connections, LIMITED_KEY))
                bare_runs.append(per_request(bare.pid, f"http://127.0.0.1:{bare_port}{path}", body, args.seconds, args.connections))
            (relay_us, relay_rps), (bare_us, bare_rps) = min(relay_runs), min(bare_runs)
            base_us = min(base_runs)[0] if base_runs else None
            lim_us = min(limited_runs)[0] if limited_runs else None
            base_lim_us = min(base_limited_runs)[0] if base_limited_runs else None
            out.append((name, relay_us, bare_us, base_us, lim_us, base_lim_us))
            print(f"{name}: relay {relay_us:.0f} us/req ({relay_rps:.0f} rps), bare {bare_us:.0f} us/req ({bare_rps:.0f} rps), "
                  f"bare/relay {bare_us / relay_us:.2f}" + (f", baseline relay {base_us:.0f} us/req" if base_us else "")
                  + (f", limited relay {lim_us:.0f} us/req ({min(limited_runs)[1]:.0f} rps)" if lim_us else "")
                  + (f", baseline limited relay {base_lim_us:.0f} us/req" if base_lim_us else ""), flush=True)
    finally:
        stop(relay)
        if base is not None:
            stop(base)
        stop(bare)
        stop(nginx)
        if redis is not None:
            redis.stop()
    print(f"\nstore: {args.store}\n| scenario | Relay CPU µs/request | bare CPU µs/request | bare / Relay | baseline Relay µs/request "
          "| limited Relay µs/request | baseline limited Relay µs/request |\n|---|---|---|---|---|---|---|")
    for name, r, b, before, lim, before_lim in out:
        print(f"| {name} | {r:.0f} | {b:.0f} | {b / r:.2f} | {f'{before:.0f}' if before else ''} | {f'{lim:.0f}' if lim else ''} "
              f"| {f'{before_lim:.0f}' if before_lim else ''} |")


if __name__ == "__main__":
    main()
