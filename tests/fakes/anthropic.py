"""A fake Anthropic Messages API. The upstream model name picks what it does:

- `text`, `tool_use`, `parallel_tool_use`, `thinking`, `max_tokens`, `error_midstream`:
  replay tests/fixtures/anthropic/<name>.(sse|json)
- `status-NNN`: the recorded Anthropic error body for HTTP NNN (429 carries retry-after: 11)
- `hang-headers`: never answers; `hang-midstream`: a few events, then silence
- `paced-NNN`: the `text` stream with NNN ms before each event

`POST /v1/messages/count_tokens` answers `{"input_tokens": len(body) // 4}` (`status-NNN`
models fail as above).
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from .base import FIXTURES, FakeUpstream


class FakeAnthropic(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES / "anthropic")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    async def count_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = await self.record(request)
        if body["model"].startswith("status-"):
            status = int(body["model"].removeprefix("status-"))
            return web.Response(status=status, body=self.fixture(f"error-{status}.json"), content_type="application/json")
        return web.json_response({"input_tokens": len(raw) // 4})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model: str = body["model"]
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            headers = {"retry-after": "11"} if status == 429 else {}
            return web.Response(status=status, body=self.fixture(f"error-{status}.json"), content_type="application/json", headers=headers)
        if model == "hang-headers":
            await asyncio.sleep(3600)
        if model == "hang-midstream" and body.get("stream"):
            return await self.replay(request, self.fixture("text.sse"), hang_after=3)
        if model.startswith("paced-") and body.get("stream"):
            return await self.replay(request, self.fixture("text.sse"), delay=int(model.removeprefix("paced-")) / 1000)
        if body.get("stream"):
            return await self.replay(request, self.fixture(f"{model}.sse"))
        return web.Response(body=self.fixture(f"{model}.json"), content_type="application/json")
