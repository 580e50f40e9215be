"""A fake upstream for one agent tool loop, in both protocols (Anthropic Messages at
/v1/messages, OpenAI chat at /v1/chat/completions), replaying tests/fixtures/tool-loop/:

- a request without a tool result gets turn 1: a `Bash` call (`echo relay-$((6*7))`);
- a request that carries the tool's result gets turn 2: an answer quoting that result
  (`{{TOOL_RESULT}}` in the transcript), so the final text proves the command really ran.

It only streams, as Claude Code does: a non-streaming request (the retry Claude Code makes
after a broken stream) is recorded and refused, so a test counting requests sees it.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .base import FIXTURES, FakeUpstream


def anthropic_result(body: dict[str, Any]) -> str | None:
    last = (body.get("messages") or [{}])[-1]
    for block in last.get("content") if isinstance(last.get("content"), list) else ():
        if block.get("type") == "tool_result":
            content = block.get("content")
            return content if isinstance(content, str) else "".join(b.get("text", "") for b in content or ())
    return None


def chat_result(body: dict[str, Any]) -> str | None:
    last = (body.get("messages") or [{}])[-1]
    return last.get("content") if last.get("role") == "tool" else None


class ToolLoopUpstream(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES / "tool-loop")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        return await self._turn(request, body, "anthropic", anthropic_result(body))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        return await self._turn(request, body, "chat", chat_result(body))

    async def _turn(self, request: web.Request, body: dict[str, Any], kind: str, result: str | None) -> web.StreamResponse:
        if not body.get("stream"):
            return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": "stream only"}},
                                     status=400)
        if result is None:
            return await self.replay(request, self.fixture(f"{kind}-turn1-tool.sse"))
        answer = self.fixture(f"{kind}-turn2-answer.sse").replace(b"{{TOOL_RESULT}}", json.dumps(result.strip())[1:-1].encode())
        return await self.replay(request, answer)
