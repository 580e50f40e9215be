"""`responses: native`: the upstream speaks Responses; bytes are relayed as they come, and the
usage is read on the side from the terminal event (or the JSON body)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from relay_adaptors import jsonfast
from relay_adaptors.sse import SSEDecoder

from .accounting import Accounting
from .chat_stream import StreamOutcome
from .sse_out import SSE_HEADERS, finish

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def chat_usage(resp_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage in the chat shape the ledger reads."""
    if not resp_usage:
        return None
    return {
        "prompt_tokens": resp_usage.get("input_tokens", 0),
        "completion_tokens": resp_usage.get("output_tokens", 0),
        "prompt_tokens_details": {"cached_tokens": (resp_usage.get("input_tokens_details") or {}).get("cached_tokens", 0)},
        "completion_tokens_details": {"reasoning_tokens": (resp_usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)},
    }


class UsageTap:
    """Watches relayed bytes for the usage of the final response."""

    def __init__(self, streaming: bool):
        self.sse = SSEDecoder() if streaming else None
        self.body: list[bytes] = []
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        if self.sse is None:
            self.body.append(data)
            return
        for ev in self.sse.feed(data):
            if ev.event in _TERMINAL:
                try:
                    self.usage = chat_usage(jsonfast.loads(ev.data).get("response", {}).get("usage"))
                except (jsonfast.JSONDecodeError, AttributeError):
                    pass

    def close(self) -> None:
        if self.sse is None and self.body:
            try:
                self.usage = chat_usage(jsonfast.loads(b"".join(self.body)).get("usage"))
            except (jsonfast.JSONDecodeError, AttributeError):
                pass


async def relay_native(request: web.Request, adaptor: Any, call: Any, headers: dict[str, str], acct: Accounting) -> web.StreamResponse:
    upstream = await adaptor.responses_passthrough(call)
    streaming = upstream.content_type.startswith("text/event-stream")
    tap = UsageTap(streaming)
    acct.outcome = StreamOutcome()
    try:
        resp = web.StreamResponse(status=upstream.status, headers={"Content-Type": upstream.content_type, **headers})
        if streaming:
            resp.headers.update({k: v for k, v in SSE_HEADERS.items() if k != "Content-Type"})
        await resp.prepare(request)
        async for data in upstream.chunks:
            tap.feed(data)
            await resp.write(data)
        await resp.write_eof()
        acct.outcome.finished = True
        return resp
    finally:
        await finish(upstream.chunks.aclose())
        tap.close()
        acct.usage = tap.usage
