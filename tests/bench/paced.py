"""A paced chat-SSE upstream for the benchmark (run as its own process):
`/paced/v1/chat/completions`: first chunk after 200 ms, then one every 20 ms (TTFT; the first
chunk's text is the upstream's clock when the request arrived and when the chunk left);
`/slow/v1/chat/completions`: a chunk every 5 seconds for five minutes (thousands of streams held
open at once: each stays open long after the last one opened, and costs little while it waits)."""
from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web


def frame(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    chunk = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1763780000, "model": "paced",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"  # compact, as OpenAI writes it


async def stream(request: web.Request, first: float, every: float, count: int) -> web.StreamResponse:
    arrived = time.perf_counter()  # CLOCK_MONOTONIC: the benchmark's client reads the same clock
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await asyncio.sleep(first)
    try:
        for i in range(count):
            if i:
                await asyncio.sleep(every)
            # The first text says when the request arrived and when the chunk left (TTFT's two legs).
            await resp.write(frame(f"w{i} " if i else f"{arrived!r} {time.perf_counter()!r} "))
        await resp.write(frame(None, "stop") + b"data: [DONE]\n\n")
    except ConnectionError:
        pass  # the benchmark's client let go of a held stream
    return resp


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/paced/v1/chat/completions", lambda r: stream(r, 0.2, 0.02, 20))
    app.router.add_post("/slow/v1/chat/completions", lambda r: stream(r, 0.05, 5.0, 60))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=8192)


if __name__ == "__main__":
    main()
