"""A fake OpenAI-compatible upstream. The upstream model name picks what it does:

- `text`, `tools`, `reasoning`, `length`, `error-midstream`: replay tests/fixtures/openai/chat-<name>.(sse|json)
- `status-NNN`: an OpenAI error object with HTTP status NNN (429 carries retry-after: 7);
  `status-NNN@S`: the same with retry-after: S
- `script[model]`: a list of behaviours answered in turn, one per request (then the model's own)
- `hang-headers`: never answers; `hang-watched`: never answers, counts callers that hang up; `hang-midstream`: two frames, then silence
- `truncated`: a stream that ends without [DONE]; `garbage`: a body that is not JSON
- `echo-key`: a 429 whose message quotes the key it got
- `slow-NNN`: the `text` transcript with NNN ms before the response headers
- `paced-NNN`: the `text` stream with NNN ms before each frame

`POST /v1/responses` replays responses-text.(sse|json), for `responses: native` channels.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from .base import FIXTURES, FakeUpstream


class FakeOpenAI(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES / "openai")
        self.hung_up = 0  # `hang-watched` requests whose caller went away
        self.behaviour: dict[str, str] = {}  # model -> behaviour, changeable while a test runs
        self.script: dict[str, list[str]] = {}  # model -> behaviours for the next requests, in order

    def behaviour_of(self, model: str) -> str:
        queued = self.script.get(model)
        if queued:
            return queued.pop(0)
        return self.behaviour.get(model, model)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        return app

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """A server with a native Responses API (for `responses: native` channels)."""
        body = await self.record(request)
        model = self.behaviour_of(body["model"])
        if model.startswith("status-"):
            return await self.chat_error(model)
        if body.get("stream"):
            return await self.replay(request, self.fixture("responses-text.sse"))
        return web.Response(body=self.fixture("responses-text.json"), content_type="application/json")

    async def chat_error(self, behaviour: str) -> web.Response:
        code, _, retry_after = behaviour.removeprefix("status-").partition("@")
        status = int(code)
        headers = {"retry-after": retry_after or "7"} if status == 429 else {}
        err = {"error": {"message": f"upstream says {status}", "type": "test_error", "param": None, "code": f"code_{status}"}}
        return web.json_response(err, status=status, headers=headers)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model = self.behaviour_of(body["model"])
        stream = bool(body.get("stream"))
        if model.startswith("status-"):
            return await self.chat_error(model)
        if model == "echo-key":  # an upstream that quotes the key in its error message
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return web.json_response({"error": {"message": f"quota exceeded for key {key}", "type": "x"}}, status=429)
        if model == "hang-headers":
            await asyncio.sleep(3600)
        if model == "hang-watched":  # never answers, and notes when the caller hangs up
            try:
                while request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # the server cancels a handler whose client went away
                self.hung_up += 1
                raise
            self.hung_up += 1
            return web.Response(status=499)
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.removeprefix("slow-")) / 1000)
            model = "text"
        if model.startswith("paced-") and stream:  # one frame every NNN ms
            return await self.replay(request, self.fixture("chat-text.sse"), delay=int(model.removeprefix("paced-")) / 1000)
        if model == "garbage":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if not stream:
            return web.Response(body=self.fixture(f"chat-{model}.json"), content_type="application/json")
        if model == "hang-midstream":
            return await self.replay(request, self.fixture("chat-text.sse"), hang_after=2)
        if model == "truncated":
            data = self.fixture("chat-text.sse")
            return await self.replay(request, data[: data.index(b"data: [DONE]")])
        return await self.replay(request, self.fixture(f"chat-{model}.sse"))

