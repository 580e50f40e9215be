"""A fake Anthropic Messages API for tool loops, enforcing the rules the real API enforces.

Model `loop` (or `loop-think`, whose first turn thinks) answers from
tests/fixtures/anthropic/loop/:
- a forced tool_choice {"type": "tool", "name": N}: `forced_tool`, calling N;
- a first turn (the last user turn holds no tool_result): `tool_use` / `thinking_tool_use`;
- after tool results: `json_answer` when the request offers Relay's answer tool, else `final_text`.

Refused with the real API's 400 (invalid_request_error), so a test of the gateway can fail:
- thinking enabled while tool_choice forces tool use;
- thinking enabled and the last assistant turn called tools without starting with its
  thinking block (the rule chat clients break when they drop signatures);
- a tool_result whose tool_use_id matches no tool_use of the previous assistant turn.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .base import FIXTURES, FakeUpstream


def rule_broken(body: dict[str, Any]) -> str | None:
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    if thinking and (body.get("tool_choice") or {}).get("type") in ("tool", "any"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    messages = body.get("messages") or []
    assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not assistants:
        return None
    last = assistants[-1]
    content = messages[last].get("content") or []
    calls = {b.get("id") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"}
    if thinking and calls and content[0].get("type") not in ("thinking", "redacted_thinking"):
        return (f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{content[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must start "
                "with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).")
    following = messages[last + 1]["content"] if last + 1 < len(messages) else []
    for block in following if isinstance(following, list) else []:
        if block.get("type") == "tool_result" and block.get("tool_use_id") not in calls:
            return f"messages.{last + 1}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}."
    return None


class FakeAnthropicLoop(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES / "anthropic" / "loop")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        return app

    def answer(self, body: dict[str, Any]) -> tuple[str, str | None]:
        """(fixture name, tool name to put in a forced call)."""
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            return "forced_tool", choice["name"]
        last_user = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {})
        content = last_user.get("content")
        after_tools = isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)
        if not after_tools:
            return ("thinking_tool_use" if body["model"] == "loop-think" else "tool_use"), None
        offered = {t.get("name") for t in body.get("tools") or ()}
        return ("json_answer" if "json_response" in offered else "final_text"), None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        problem = rule_broken(body)
        if problem:
            err = {"type": "error", "error": {"type": "invalid_request_error", "message": problem}, "request_id": "req_fake"}
            return web.json_response(err, status=400)
        name, tool = self.answer(body)
        data = self.fixture(f"{name}.{'sse' if body.get('stream') else 'json'}")
        if tool is not None:
            data = data.replace(b"TOOL_NAME", json.dumps(tool)[1:-1].encode())
        if body.get("stream"):
            return await self.replay(request, data)
        return web.Response(body=data, content_type="application/json")
