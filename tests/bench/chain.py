"""The stored-chain row of `make bench`: a continuation of a 20-turn chain by
`previous_response_id` against a first turn, non-stream, on the mock channel and the SQLite
store, at c=1. Each measured request is stored too (as a client's would be), so the figure
is the whole cost of state: loading the chain, replaying it, storing the new response."""
from __future__ import annotations

import asyncio

import aiohttp

from . import wrk

MODEL = "mock-chain"
TURNS = 20
CHANNEL = f"  - name: mock-chain\n    type: mock\n    models: [{MODEL}]\n    stream_chunks: 4"


async def build_chain(url: str, key: str, turns: int = TURNS) -> str:
    """The id of the last response of a chain of `turns` stored responses."""
    previous = None
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:
        for n in range(turns):
            body = {"model": MODEL, "input": f"Turn {n}: say something about the number {n}."}
            if previous:
                body["previous_response_id"] = previous
            async with s.post(url + "/v1/responses", json=body) as r:
                answer = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"building the chain: {r.status} {answer}")
                previous = answer["id"]
    assert previous is not None
    return previous


def measure(url: str, key: str, seconds: int, median_of: int = 3) -> dict[str, float]:
    last = asyncio.run(build_chain(url, key))
    first = {"model": MODEL, "input": "Say something."}
    continued = {**first, "previous_response_id": last}

    def p50(body: dict) -> tuple[float, int]:
        runs = sorted((wrk.run(url + "/v1/responses", body, connections=1, seconds=seconds, cpu="1", key=key)
                       for _ in range(median_of)), key=lambda r: r.p50_ms)
        return runs[len(runs) // 2].p50_ms, sum(r.errors for r in runs)

    wrk.run(url + "/v1/responses", continued, connections=1, seconds=1, cpu="1", key=key)  # warm-up
    first_ms, e1 = p50(first)
    cont_ms, e2 = p50(continued)
    return {"chain_first_p50_ms": round(first_ms, 3), "chain_continued_p50_ms": round(cont_ms, 3),
            "chain_added_p50_ms": round(cont_ms - first_ms, 3), "chain_errors": e1 + e2}


def line(res: dict) -> str:
    return (f"Continuing a {TURNS}-turn stored chain (non-stream, mock channel, SQLite store, c=1): p50 "
            f"{res['chain_continued_p50_ms']:.2f} ms against {res['chain_first_p50_ms']:.2f} ms for a first turn: "
            f"{res['chain_added_p50_ms']:.2f} ms added (target ≤ 2 ms), {res['chain_errors']} errors.")


if __name__ == "__main__":  # python -m tests.bench.chain URL KEY: against a running Relay with the mock-chain channel
    import sys

    result = measure(sys.argv[1], sys.argv[2], 3)
    print(result)
    print(line(result))
