"""A fake upstream that serves only `POST /v1/responses` (no chat endpoint: a chat request
there is a 404), for `api: responses` channels. The upstream model name picks what it does:

- `text`, `tools` (two parallel calls), `tool` (text, then a call), `reasoning` (a two-part
  summary, then text), `incomplete` (max_output_tokens): replay
  tests/fixtures/openai/responses-<name>.(sse|json)
- `failed`: a stream ending in `response.failed`; `error`: a stream with an `error` event
- `status-NNN`: an OpenAI error object with HTTP status NNN (429 carries retry-after: 7)
- `truncated`: the `text` stream cut before its terminal event
- `param-error`: a 400 naming the Responses parameter `max_output_tokens`
"""
from __future__ import annotations

from aiohttp import web

from .base import FIXTURES, FakeUpstream


class FakeResponsesOnly(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES / "openai")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/responses", self.responses)
        return app

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        model: str = body["model"]
        if model.startswith("status-"):
            status = int(model.removeprefix("status-"))
            err = {"error": {"message": f"upstream says {status}", "type": "test_error", "param": None, "code": f"code_{status}"}}
            return web.json_response(err, status=status, headers={"retry-after": "7"} if status == 429 else {})
        if model == "param-error":
            err = {"error": {"message": "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                             "but got 5 instead.", "type": "invalid_request_error", "param": "max_output_tokens",
                             "code": "integer_below_min_value"}}
            return web.json_response(err, status=400)
        if not body.get("stream"):
            return web.Response(body=self.fixture(f"responses-{model}.json"), content_type="application/json")
        if model == "truncated":
            data = self.fixture("responses-text.sse")
            return await self.replay(request, data[: data.index(b"event: response.completed")])
        return await self.replay(request, self.fixture(f"responses-{model}.sse"))
