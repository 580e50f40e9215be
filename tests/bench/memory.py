"""Memory per open stream: N chat streams held open on the paced upstream's `slow` model
(a chunk every 5 s), first through Relay, then through the bare aiohttp proxy (the floor of
our own stack: aiohttp's client and server objects per stream), with the resident set of
each process idle and with the N streams open.

    python -m tests.bench.memory [N] [relay|bare] [--prompt=CHARS]    # N: 2000; both processes unless one is named

`measure(...)` is the entry `make bench` can call with processes it already runs.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..proc import ROOT, free_port
from .stack import KEY, relay_config, rss_kb, start_relay, stop, wait_port

PATH = "/v1/chat/completions"
WARMUP = 50  # streams opened (and closed) first, so lazily built state counts as idle


def hold(url: str, streams: int, seconds: float, key: str = KEY, prompt: int = 0) -> tuple[subprocess.Popen, dict]:
    """Starts tests.bench.hold on core 1; returns it (still holding) and its report line."""
    proc = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "tests.bench.hold", url + PATH, str(streams), key, str(seconds),
                             str(prompt)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def held_rss(pid: int, url: str, streams: int, key: str = KEY, prompt: int = 0) -> dict:
    """RSS of `pid` idle (after a warm-up) and with `streams` streams open through `url`."""
    warm, _ = hold(url, WARMUP, 0, key)
    warm.wait(timeout=60)
    time.sleep(6)  # the warm-up's streams are torn down (the bare proxy notices at its next write, <= 5 s)
    idle, _ = rss_kb(pid)
    proc, held = hold(url, streams, 2, key, prompt)
    time.sleep(0.5)  # the last streams' first chunks are out; nothing else moves for 5 s
    full, peak = rss_kb(pid)
    proc.wait(timeout=120)
    time.sleep(1)
    after, _ = rss_kb(pid)
    opened = held["open"]
    return {"open": opened, "errors": held["errors"], "rss_idle_mb": round(idle / 1024, 1), "rss_open_mb": round(full / 1024, 1),
            "rss_after_mb": round(after / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
            "kb_per_stream": round((full - idle) / opened, 1) if opened else None}


def measure(relay_url: str, relay_pid: int, bare_url: str, bare_pid: int, streams: int, key: str = KEY,
            which: tuple[str, ...] = ("relay", "bare"), prompt: int = 0) -> dict:
    """Both processes in turn. Keys: `streams`, then per process (`relay_`, `bare_` prefix):
    `open`, `errors`, `rss_idle_mb`, `rss_open_mb`, `rss_after_mb` (1 s after the streams
    closed), `peak_rss_mb` (VmHWM), `kb_per_stream` ((open - idle) / open streams); and
    `relay_over_bare_kb` (Relay's KB per stream beyond the bare proxy's). `prompt`: the user
    message's size in characters (0: a one-word prompt)."""
    out: dict = {"streams": streams, "prompt_chars": prompt}
    for name, url, pid in (("relay", relay_url, relay_pid), ("bare", bare_url, bare_pid)):
        if name not in which:
            continue
        out.update({f"{name}_{k}": v for k, v in held_rss(pid, url, streams, key, prompt).items()})
    if out.get("relay_kb_per_stream") is not None and out.get("bare_kb_per_stream") is not None:
        out["relay_over_bare_kb"] = round(out["relay_kb_per_stream"] - out["bare_kb_per_stream"], 1)
    return out


def line(res: dict) -> str:
    return (f"{res['streams']:,} streams held open on a slow upstream: Relay {res['relay_kb_per_stream']} KB per stream "
            f"(RSS {res['relay_rss_idle_mb']:.0f} MB idle, {res['relay_rss_open_mb']:.0f} MB with {res['relay_open']} open, "
            f"{res['relay_errors']} errors); bare aiohttp proxy {res['bare_kb_per_stream']} KB per stream "
            f"(RSS {res['bare_rss_idle_mb']:.0f} MB idle, {res['bare_rss_open_mb']:.0f} MB with {res['bare_open']} open, "
            f"{res['bare_errors']} errors).")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    streams = int(args[0]) if args else 2000
    which = tuple(args[1:]) or ("relay", "bare")
    prompt = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--prompt=")), 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="relay-memory-"))
    paced_port, bare_port, port = free_port(), free_port(), free_port()
    paced = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "tests.bench.paced", str(paced_port)], cwd=ROOT)
    wait_port(paced_port)
    bare = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "tests.bench.bare", str(bare_port), f"http://127.0.0.1:{paced_port}",
                             json.dumps({f"{PATH} slow": f"http://127.0.0.1:{paced_port}/slow/v1/chat/completions"})], cwd=ROOT)
    wait_port(bare_port)
    relay = None
    try:
        # No nginx here: the config's nginx channels point at a port nothing listens on, unused.
        relay = start_relay(relay_config(tmp, free_port(), paced_port), port, "0")
        res = measure(f"http://127.0.0.1:{port}", relay.pid, f"http://127.0.0.1:{bare_port}", bare.pid, streams, which=which, prompt=prompt)
    finally:
        if relay is not None:
            stop(relay)
        stop(bare)
        stop(paced)
    print(json.dumps(res, indent=2))
    if len(which) == 2:
        print(line(res))


if __name__ == "__main__":
    main()
