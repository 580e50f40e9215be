"""A loopback front that records every request a client program makes, then forwards it
to Relay and streams the answer back unchanged. It doubles as the client's HTTP(S) proxy:
a proxied request (CONNECT, or an absolute URL) is any traffic meant for elsewhere,
e.g. a program phoning home; it is recorded and refused, so a test can assert there was none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

# Hop-by-hop or recomputed headers that a forwarder must not copy.
SKIPPED = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class ClientCall:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any
    status: int = 0
    answer: bytes = b""  # the response body Relay sent, as sent


@dataclass
class ClientRecorder:
    target: str  # Relay's base URL
    calls: list[ClientCall] = field(default_factory=list)
    proxied: list[str] = field(default_factory=list)  # "METHOD target" of each refused proxy request

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self.refuse_proxying])
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    @web.middleware
    async def refuse_proxying(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A middleware, as a CONNECT target (host:port) matches no route.
        if request.method == "CONNECT" or request.raw_path.startswith(("http://", "https://")):
            self.proxied.append(f"{request.method} {request.raw_path}")
            return web.Response(status=403, text="no network beyond loopback in tests")
        return await handler(request)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        encoded = "Content-Encoding" in request.headers  # a compressed body is kept as bytes
        call = ClientCall(request.method, request.path_qs, CIMultiDict(request.headers),
                          raw if encoded else json.loads(raw) if raw else None)
        self.calls.append(call)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIPPED}
        headers["Accept-Encoding"] = "identity"  # an uncompressed answer, so the recorded one is readable
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(request.method, self.target + request.path_qs, data=raw, headers=headers) as upstream:
                call.status = upstream.status
                resp = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in SKIPPED})
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    call.answer += chunk
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
