"""A stream converter that meets a shape it did not expect must end the answer with a 502
error item, as for any upstream answer that cannot be read, never an exception that cuts the
connection. The upstream is a real aiohttp server on loopback; the channel is a plugin-style
HttpAdaptor whose converter fails on one frame as a converter with a bug would."""
from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from relay_adaptors.kernel.base import Call, StreamItem
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.http import HttpAdaptor, UpstreamRequest
from relay_config.schema import Timeouts

BODY = b"data: one\n\ndata: two\n\ndata: three\n\n"


class Trusting:
    """One chunk per `data:` frame, looked up in a table that lacks the second frame's key."""

    KNOWN = {b"data: one": 1, b"data: three": 3}

    def feed(self, data: bytes) -> list[StreamItem]:
        return [{"id": "c", "choices": [], "n": self.KNOWN[frame]} for frame in data.split(b"\n\n") if frame]

    def close(self) -> list[StreamItem]:
        return []


class Channel(HttpAdaptor):
    def __init__(self, url: str, session: aiohttp.ClientSession):
        super().__init__("plugin", Timeouts(), session)
        self.url = url

    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        return UpstreamRequest(self.url, {"content-type": "application/json"}, b"{}")

    def stream_converter(self, call: Call) -> Trusting:
        return Trusting()


async def test_a_converter_that_trips_on_a_shape_ends_the_stream_with_a_502(aiohttp_server, caplog):
    async def stream(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/x", stream)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        channel = Channel(str(server.make_url("/v1/x")), session)
        items = [i async for batch in await channel.open_stream(Call({"model": "m"}, "m", "req_1")) for i in batch]
    assert isinstance(items[-1], RelayError)
    assert (items[-1].status, items[-1].code) == (502, "bad_upstream_response")
    assert "unexpected shape (KeyError)" in items[-1].message
    assert any(r.levelno == logging.WARNING and "could not be converted" in r.getMessage() and r.exc_info
               for r in caplog.records)  # the traceback is kept for whoever fixes the converter
