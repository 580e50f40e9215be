"""Channel type `mock`: answers locally, no network. A real feature for demos and load tests."""
from __future__ import annotations

import asyncio
from typing import Any

from relay_config.schema import MockChannel

from ..kernel import chunks
from ..kernel.base import Call, Capabilities, ChatStream, StreamItem
from .reply import make_reply, split_even


class MockAdaptor:
    capabilities = Capabilities()

    def __init__(self, cfg: MockChannel):
        self.name = cfg.name
        self.cfg = cfg

    async def complete(self, call: Call) -> dict[str, Any]:
        r = make_reply(call.request, self.cfg.reply)
        if self.cfg.chunk_delay:
            await asyncio.sleep(self.cfg.chunk_delay * self.cfg.stream_chunks)
        return chunks.completion(
            chunks.completion_id(), call.upstream_model, chunks.now(),
            {"role": "assistant", "content": r.text}, r.finish_reason,
            chunks.usage(r.prompt_tokens, r.completion_tokens),
        )

    async def open_stream(self, call: Call) -> ChatStream:
        return self._stream(call)

    async def _stream(self, call: Call) -> ChatStream:
        r = make_reply(call.request, self.cfg.reply)
        cid, created, model = chunks.completion_id(), chunks.now(), call.upstream_model
        delay = self.cfg.chunk_delay
        head: list[StreamItem] = [chunks.chunk(cid, model, created, {"role": "assistant", "content": ""})]
        pieces: list[StreamItem] = list(split_even(r.text, self.cfg.stream_chunks))  # text alone (base.StreamItem)
        tail: list[StreamItem] = [chunks.chunk(cid, model, created, {}, r.finish_reason),
                chunks.usage_chunk(cid, model, created, chunks.usage(r.prompt_tokens, r.completion_tokens))]
        if not delay:  # everything at once: one batch, as a fast upstream read would give
            yield head + pieces + tail
            return
        yield head
        for piece in pieces:  # one chunk per pause, as a model would send them
            await asyncio.sleep(delay)
            yield [piece]
        yield tail
