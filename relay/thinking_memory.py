"""Thinking continuity for chat clients that cannot carry signatures.

With thinking on, Anthropic requires an assistant turn that called tools to come back with
its signed thinking blocks first. Relay hands them to chat clients in its own
`reasoning_signature` field, which most chat clients drop. So Relay also remembers them:
keyed by tenant and the tool call ids of the same turn, for a bounded time; when a client
sends that turn back without them, they are put back. Nothing remembered (expired, evicted,
another instance without a shared store) means the Anthropic conversion turns thinking off
for that request instead of sending a turn the API refuses.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from relay_adaptors.kernel.base import ChatStream
from relay_adaptors.kernel.errors import RelayError

from .store import StoreError

log = logging.getLogger("relay")

TTL = 3600.0
MAX_TOKEN = 256 * 1024  # a thinking token larger than this is not remembered


class KV(Protocol):
    """Where the blocks are kept: the configured usage store (SQLite for one machine's
    workers, Redis for many instances), so a turn answered on one instance continues on another."""

    async def kv_get(self, key: str) -> str | None: ...

    async def kv_put(self, key: str, value: str, ttl: float) -> None: ...


def _key(tenant: str, call_ids: list[str]) -> str:
    digest = hashlib.sha256("\x00".join(sorted(call_ids)).encode()).hexdigest()
    return f"thinking:{tenant}:{digest}"


class ThinkingMemory:
    """A store that fails is a miss, never a failed request: the conversion then turns
    thinking off."""

    def __init__(self, kv: KV, ttl: float = TTL):
        self.kv, self.ttl = kv, ttl

    async def remember(self, tenant: str, call_ids: list[str], token: str) -> None:
        if call_ids and token and len(token) <= MAX_TOKEN:
            try:
                await self.kv.kv_put(_key(tenant, call_ids), token, self.ttl)
            except StoreError as e:
                log.warning("thinking memory: the store failed a write (%s)", e)

    async def _recall(self, tenant: str, call_ids: list[str]) -> str | None:
        try:
            return await self.kv.kv_get(_key(tenant, call_ids))
        except StoreError as e:
            log.warning("thinking memory: the store failed a read (%s); the turn goes without thinking", e)
            return None

    async def restore(self, tenant: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """`messages` with remembered thinking put back into assistant tool turns that came
        without it; None when there was nothing to put back."""
        out: list[dict[str, Any]] | None = None
        for i, msg in enumerate(messages):
            if msg.get("role") != "assistant" or msg.get("reasoning_signature") or not msg.get("tool_calls"):
                continue
            ids = [c["id"] for c in msg["tool_calls"] if isinstance(c, dict) and isinstance(c.get("id"), str)]
            token = await self._recall(tenant, ids) if ids else None
            if token:
                out = out if out is not None else list(messages)
                out[i] = {**msg, "reasoning_signature": token}
        return out

    async def remember_completion(self, tenant: str, completion: dict[str, Any]) -> None:
        for choice in completion.get("choices") or ():
            msg = choice.get("message") or {}
            ids = [c["id"] for c in msg.get("tool_calls") or () if isinstance(c.get("id"), str)]
            if isinstance(msg.get("reasoning_signature"), str):
                await self.remember(tenant, ids, msg["reasoning_signature"])

    def watch(self, tenant: str, stream: ChatStream) -> ChatStream:
        """`stream` unchanged, remembering its turn's thinking before the stream ends."""
        return _watched(self, tenant, stream)


async def _watched(memory: ThinkingMemory, tenant: str, stream: ChatStream) -> ChatStream:
    tokens: list[str] = []
    ids: list[str] = []
    failed = False
    try:
        async for batch in stream:
            for item in batch:
                if isinstance(item, str):  # text alone: nothing to remember
                    continue
                if isinstance(item, RelayError):
                    failed = True
                    continue
                for choice in item.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if isinstance(delta.get("reasoning_signature"), str):
                        tokens.append(delta["reasoning_signature"])
                    for call in delta.get("tool_calls") or ():
                        if isinstance(call.get("id"), str):
                            ids.append(call["id"])
            yield batch
        if not failed:  # remembered before the stream's end reaches the client
            await memory.remember(tenant, ids, "".join(tokens))
    finally:
        await stream.aclose()
