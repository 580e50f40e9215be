"""A fake OpenAI chat upstream for the real Codex CLI behind Relay's Responses bridge:

- a request whose last message is a tool result gets an answer quoting that result's
  output (tests/fixtures/tool-loop/chat-turn2-answer.sse, `{{TOOL_RESULT}}` filled in);
- else, a user prompt that asks to run a command gets a call of Codex's own shell tool,
  `exec_command` with `echo relay-$((6*7))` (tests/fixtures/codex/chat-turn1-exec-command.sse);
- anything else gets a plain text answer (tests/fixtures/openai/chat-text.sse).

With `full_context`, the call turn reports a nearly full context (990,000 prompt tokens),
which makes Codex compact its history before it sends the tool's result.

It only streams, as Codex does; a non-streaming request is recorded and refused.
"""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .base import FIXTURES, FakeUpstream
from .tool_loop import chat_result

RUN_MARKER = "Run the shell command"


def shown_output(result: str) -> str:
    """The command's own output from Codex's exec_command result (which leads with
    `Chunk ID`, `Wall time`, `Process exited with code N`, then `Output:`)."""
    return result.partition("Output:\n")[2].strip() or result.strip()


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or () if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or ())


class CodexLoopUpstream(FakeUpstream):
    def __init__(self, *, full_context: bool = False) -> None:
        super().__init__(FIXTURES)
        self.full_context = full_context

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        if not body.get("stream"):  # Relay's summary call for a compaction: the recorded text answer
            return web.Response(body=self.fixture("openai/chat-text.json"), content_type="application/json")
        result = chat_result(body)
        if result is not None:
            answer = self.fixture("tool-loop/chat-turn2-answer.sse")
            return await self.replay(request, answer.replace(b"{{TOOL_RESULT}}", json.dumps(shown_output(result))[1:-1].encode()))
        if RUN_MARKER in last_user_text(body):
            call = self.fixture("codex/chat-turn1-exec-command.sse")
            if self.full_context:
                call = re.sub(rb'"(prompt|total)_tokens":\d+', rb'"\1_tokens":990000', call)
            return await self.replay(request, call)
        return await self.replay(request, self.fixture("openai/chat-text.sse"))
