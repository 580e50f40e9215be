"""The floor of our own stack: a bare aiohttp reverse proxy on the same core as Relay. It
parses the JSON body for `model`, forwards it on one pooled ClientSession to the upstream
the row uses, and relays the answer chunk by chunk. Nothing else: no auth, limits,
accounting, metrics, logging or conversion.

    python -m tests.bench.bare PORT UPSTREAM_BASE ROUTES_JSON   # ROUTES_JSON: {"<path> <model>": "<upstream path or URL>"}
"""
from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
from aiohttp import web


def main() -> None:
    port, base, routes = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    session: aiohttp.ClientSession | None = None

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        route = routes[f"{request.path} {json.loads(body)['model']}"]
        target = route if route.startswith("http") else base + route
        assert session is not None
        resp = web.StreamResponse()
        try:
            async with session.post(target, data=body, headers={"Content-Type": "application/json"}) as up:
                resp.set_status(up.status)
                resp.content_type = up.headers.get("Content-Type", "application/json").split(";")[0]
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
        except ConnectionError:  # wrk hung up at the end of a run
            pass
        return resp

    async def on_start(app: web.Application) -> None:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar())

    async def on_stop(app: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.on_startup.append(on_start)
    app.on_cleanup.append(on_stop)
    app.router.add_post("/{tail:.*}", proxy)
    try:
        import uvloop  # the same event loop Relay runs on
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
