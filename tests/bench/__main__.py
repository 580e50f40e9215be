"""`make bench`: Relay against nginx-served upstream bodies, each row beside the same upstream
called directly and through a bare aiohttp proxy (tests/bench/bare.py: the floor of our own
stack). Relay and the bare proxy are pinned to core 0; nginx, wrk and the helpers to core 1.
Writes bench-results/latest.json and prints the README table."""
from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from ..proc import ROOT, free_port
from ..redis_server import RedisServer
from . import chain, instructions, memory, wrk
from .stack import (
    KEY,
    LIMITED_KEY,
    ROWS,
    body_for,
    cpu_seconds,
    relay_config,
    start_nginx,
    start_relay,
    stop,
    upstream_body,
    wait_port,
)

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# 9,900: each stream holds two sockets in Relay and this machine's hard limit is 20,000 open files.
STREAMS = int(os.environ.get("BENCH_STREAMS", "9900"))
INSTRUCTION_REQUESTS = 300


def measured(pid: int, url: str, body: dict, key: str = KEY) -> tuple[wrk.WrkResult, float]:
    """A c=32 run and the CPU microseconds per request the process `pid` spent on it."""
    before = cpu_seconds(pid)
    r = wrk.run(url, body, connections=32, seconds=SECONDS, cpu="1", key=key)
    return r, (cpu_seconds(pid) - before) / max(1, r.requests) * 1e6


def limited_vs_unlimited(url: str, body: dict) -> dict:
    """The same row for the unlimited tenant and the one with every limit, back to back."""
    wrk.run(url, body, connections=8, seconds=1, cpu="1", key=LIMITED_KEY)  # warm-up
    free = wrk.run(url, body, connections=32, seconds=SECONDS, cpu="1", key=KEY)
    limited = wrk.run(url, body, connections=32, seconds=SECONDS, cpu="1", key=LIMITED_KEY)
    return {"unlimited_rps": free.rps, "limited_rps": limited.rps, "ratio": round(limited.rps / free.rps, 2) if free.rps else None,
            "errors": free.errors + limited.errors}


def median_run(url: str, body: dict) -> wrk.WrkResult:
    runs = sorted((wrk.run(url, body, connections=1, seconds=max(2, SECONDS // 2), cpu="1", key=KEY) for _ in range(3)),
                  key=lambda r: r.p50_ms)
    mid = runs[1]
    mid.errors = sum(r.errors for r in runs)
    return mid


async def check(url: str, body: dict) -> None:
    """One request must succeed before a scenario is measured: errors are fast and would
    flatter the numbers."""
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
            text = await r.text()
            if r.status != 200 or "error" in text[:200]:
                raise RuntimeError(f"{url} {body.get('model')}: {r.status} {text[:300]}")


async def ttft(urls: list[str], body: dict, samples: int = 40) -> list[dict[str, float]]:
    """Per url, median milliseconds: to the first content chunk (`ttft`), and its two legs
    measured against the paced upstream's own stamps on the same monotonic clock: the request
    on its way to the upstream (`to_upstream`) and the first chunk on its way back
    (`to_client`). The upstream's 200 ms and its timer's overshoot are in neither leg, so
    their sum is the hop's own time. One sample of each url in turn: the VM's drift over the
    run moves every side alike."""
    times: list[list[tuple[float, float, float]]] = [[] for _ in urls]
    async with aiohttp.ClientSession() as s:
        for _ in range(samples):
            for url, out in zip(urls, times, strict=True):
                t = time.perf_counter()
                async with s.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
                    while True:
                        line = await r.content.readline()
                        if line.startswith(b"data: {") and b'"content"' in line:
                            now = time.perf_counter()
                            arrived, sent = map(float, json.loads(line[6:])["choices"][0]["delta"]["content"].split())
                            out.append((now - t, arrived - t, now - sent))
                            break
                    await r.read()

    def p50(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2] * 1000

    return [{"ttft": p50([x[0] for x in ts]), "to_upstream": p50([x[1] for x in ts]), "to_client": p50([x[2] for x in ts])}
            for ts in times]


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user and must read the bodies
    nginx, nginx_port = start_nginx(tmp)
    paced_port = free_port()
    paced = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "tests.bench.paced", str(paced_port)], cwd=ROOT)
    wait_port(paced_port)
    config = relay_config(tmp, nginx_port, paced_port)
    bare_port = free_port()
    routes = {f"{path} {model}": upstream for _, path, model, _, upstream in ROWS}
    for name in ("paced", "slow"):
        routes[f"/v1/chat/completions {name}"] = f"http://127.0.0.1:{paced_port}/{name}/v1/chat/completions"
    bare = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "tests.bench.bare", str(bare_port),
                             f"http://127.0.0.1:{nginx_port}", json.dumps(routes)], cwd=ROOT)
    wait_port(bare_port)
    bare_url = f"http://127.0.0.1:{bare_port}"
    port = free_port()
    relay = start_relay(config, port, "0")
    relay_url, direct_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nginx_port}"
    rows = []
    try:
        picked = os.environ.get("BENCH_ROWS")  # a substring: run only those rows (a quick check of the bench itself)
        for name, path, model, stream, upstream in [r for r in ROWS if not picked or picked in r[0]]:
            body, ubody = body_for(path, model, stream), upstream_body(upstream, model, stream)
            asyncio.run(check(relay_url + path, body))
            wrk.run(relay_url + path, body, connections=8, seconds=1, cpu="1", key=KEY)  # warm-up
            r32, r_cpu = measured(relay.pid, relay_url + path, body)
            d32 = wrk.run(direct_url + upstream, ubody, connections=32, seconds=SECONDS, cpu="1", key=KEY)
            wrk.run(bare_url + path, body, connections=8, seconds=1, cpu="1", key=KEY)  # warm-up
            b32, b_cpu = measured(bare.pid, bare_url + path, body)
            # c=1 latency is the noisiest figure on a shared VM: the median of three runs each.
            r1 = median_run(relay_url + path, body)
            b1 = median_run(bare_url + path, body)
            d1 = median_run(direct_url + upstream, ubody)
            rows.append({"scenario": name, "rps_c32": r32.rps, "p50_ms_c32": r32.p50_ms, "p99_ms_c32": r32.p99_ms,
                         "errors": r32.errors + r1.errors, "direct_rps_c32": d32.rps, "bare_rps_c32": b32.rps,
                         "relay_over_bare": round(r32.rps / b32.rps, 2) if b32.rps else None,
                         "relay_cpu_us": round(r_cpu), "bare_cpu_us": round(b_cpu), "bare_over_relay_cpu": round(b_cpu / r_cpu, 2) if r_cpu else None,
                         # The target is over the bare proxy (a hop of its own); over direct for reference.
                         "added_p50_ms_c1": round(r1.p50_ms - b1.p50_ms, 3), "relay_p50_ms_c1": r1.p50_ms,
                         "bare_p50_ms_c1": b1.p50_ms, "direct_p50_ms_c1": d1.p50_ms})
            print(f"{name}: {r32.rps:.0f} rps (bare proxy {b32.rps:.0f}, direct {d32.rps:.0f}), p50 {r32.p50_ms:.2f} ms, "
                  f"c=1 p50 {r1.p50_ms:.3f} ms (bare {b1.p50_ms:.3f}, direct {d1.p50_ms:.3f}), CPU/request {r_cpu:.0f} us (bare {b_cpu:.0f} us)", flush=True)
        chat = body_for("/v1/chat/completions", "paced", True)
        legs = asyncio.run(ttft([relay_url + "/v1/chat/completions", bare_url + "/v1/chat/completions",
                                 f"http://127.0.0.1:{paced_port}/paced/v1/chat/completions"], chat))
        extra = {"ttft": {side: {k: round(v, 3) for k, v in leg.items()} for side, leg in zip(("relay", "bare", "direct"), legs, strict=True)}}
        t_relay, t_bare, t_direct = (leg["ttft"] for leg in legs)
        extra.update({"ttft_relay_p50_ms": round(t_relay, 2), "ttft_bare_p50_ms": round(t_bare, 2), "ttft_direct_p50_ms": round(t_direct, 2),
                      "added_ttft_p50_ms": round(t_relay - t_bare, 2),
                      "added_ttft_legs_ms": round(sum(legs[0][k] - legs[1][k] for k in ("to_upstream", "to_client")), 3)})
        print(f"TTFT p50: relay {t_relay:.2f} ms, bare {t_bare:.2f} ms, direct {t_direct:.2f} ms; legs {extra['ttft']}", flush=True)
        extra.update(chain.measure(relay_url, KEY, max(2, SECONDS // 2)))
        print(chain.line(extra), flush=True)
        first = ROWS[0]
        extra["limits_sqlite"] = limited_vs_unlimited(relay_url + first[1], body_for(first[1], first[2], first[3]))
        print(f"limits on SQLite: {extra['limits_sqlite']}", flush=True)
        # Relay, then the bare proxy, each holding the streams open (memory.py).
        extra["memory"] = memory.measure(relay_url, relay.pid, bare_url, bare.pid, STREAMS)
        print(memory.line(extra["memory"]), flush=True)
    finally:
        stop(relay)
    redis = RedisServer()
    # An outside service like nginx: on the helpers' core, not competing with Relay's.
    subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)], check=True, stdout=subprocess.DEVNULL)
    (tmp / "redis").mkdir()
    relay_r = start_relay(relay_config(tmp / "redis", nginx_port, paced_port, store=redis.url), port, "0")
    try:
        first = ROWS[0]
        extra["limits_redis"] = limited_vs_unlimited(relay_url + first[1], body_for(first[1], first[2], first[3]))
        print(f"limits on Redis: {extra['limits_redis']}", flush=True)
    finally:
        stop(relay_r)
        redis.stop()
    # One worker and two, in alternating rounds right after each other (the best of each: other
    # load only ever takes throughput away): the VM's state drifts over a run, so a figure
    # from the start of the run is no fair "one worker" for one taken at its end.
    scaling: dict[int, list[float]] = {1: [], 2: []}
    try:
        first = ROWS[0]
        for _ in range(2):
            for workers, cpus in ((1, "0"), (2, "0,1")):
                proc = start_relay(config, port, cpus, workers=workers)
                try:
                    r = wrk.run(relay_url + first[1], body_for(first[1], first[2], first[3]), connections=32, seconds=SECONDS, cpu="1", key=KEY)
                    scaling[workers].append(r.rps)
                    rows[0]["errors"] += r.errors
                finally:
                    stop(proc)
        rows[0]["rps_c32_2_workers"] = max(scaling[2])
        extra["workers"] = {"one_worker_rps": max(scaling[1]), "two_workers_rps": max(scaling[2])}
    finally:
        stop(paced)
        stop(bare)
        stop(nginx)
    # Last, on a quiet machine: the figure noise cannot move (instructions.py).
    picked = os.environ.get("BENCH_ROWS")
    extra["instructions"] = instructions.measure([picked] if picked else [], INSTRUCTION_REQUESTS, False, "sqlite")
    extra["instructions_limited"] = [row for store in ("sqlite", "redis")
                                     for row in instructions.measure([ROWS[0][0]], INSTRUCTION_REQUESTS, True, store)]
    results = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": os.cpu_count(), "rows": rows, **extra}
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    for name in ("latest.json", results["time"].replace(":", "") + ".json"):  # one file per run, to compare
        (out / name).write_text(json.dumps(results, indent=2))
    print()
    print(table(results))


def table(res: dict) -> str:
    lines = ["| scenario | RPS (c=32) | bare proxy RPS | Relay / bare | CPU µs/request: Relay / bare | bare / Relay CPU | direct RPS | "
             "p50 / p99 ms (c=32) | c=1 p50 ms: Relay / bare | added p50 ms at c=1 | RPS, 2 workers | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        two = f"{r['rps_c32_2_workers']:.0f}" if "rps_c32_2_workers" in r else ""
        ratio = f"{r['relay_over_bare']:.2f}" if r.get("relay_over_bare") is not None else ""
        lines.append(f"| {r['scenario']} | {r['rps_c32']:.0f} | {r['bare_rps_c32']:.0f} | {ratio} | {r['relay_cpu_us']} / {r['bare_cpu_us']} | "
                     f"{r['bare_over_relay_cpu']:.2f} | {r['direct_rps_c32']:.0f} | "
                     f"{r['p50_ms_c32']:.2f} / {r['p99_ms_c32']:.2f} | "
                     f"{r['relay_p50_ms_c1']:.3f} / {r['bare_p50_ms_c1']:.3f} | {r['added_p50_ms_c1']:.3f} | {two} | {r['errors']} |")
    lines.append("")
    lines.append(f"Added TTFT p50 over the bare proxy (paced upstream: first chunk at 200 ms, then every 20 ms): {res['added_ttft_p50_ms']:.2f} ms "
                 f"(relay {res['ttft_relay_p50_ms']:.2f} ms, bare proxy {res['ttft_bare_p50_ms']:.2f} ms, direct {res['ttft_direct_p50_ms']:.2f} ms).")
    if "ttft" in res:
        r, b = res["ttft"]["relay"], res["ttft"]["bare"]
        lines.append(f"TTFT's legs, against the paced upstream's own timestamps (p50): the request to the upstream "
                     f"{r['to_upstream']:.3f} ms through Relay, {b['to_upstream']:.3f} ms through the bare proxy; the first chunk "
                     f"to the client {r['to_client']:.3f} / {b['to_client']:.3f} ms: {res['added_ttft_legs_ms']:.3f} ms added.")
    lines.append(memory.line(res["memory"]))
    for store in ("sqlite", "redis"):
        lim = res[f"limits_{store}"]
        lines.append(f"Tenant with rpm/tpm/concurrency/budget limits on {store.capitalize() if store == 'redis' else 'SQLite'}, non-stream passthrough: "
                     f"{lim['limited_rps']:.0f} RPS against {lim['unlimited_rps']:.0f} unlimited ({lim['ratio']:.2f}×), {lim['errors']} errors.")
    lines.append(chain.line(res))
    one, two = res["workers"]["one_worker_rps"], res["workers"]["two_workers_rps"]  # the same row and wrk load
    lines.append(f"`--workers 2`, non-stream passthrough: {two:.0f} RPS against {one:.0f} for one worker ({two / one:.2f}×; "
                 "the best of two alternating rounds each).")
    if "instructions" in res:
        lines += ["", f"Instructions per request (callgrind, {INSTRUCTION_REQUESTS} requests per figure, "
                  f"{instructions.CONCURRENCY} at a time), SQLite store:", "", instructions.table(res["instructions"]), "",
                  "The tenant with every limit, non-stream passthrough, per store:", "", instructions.table(res["instructions_limited"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
