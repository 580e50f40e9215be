"""Writes a chat stream to the client as chat-completions SSE."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from relay_adaptors import jsonfast
from relay_adaptors.base import ChatStream
from relay_adaptors.errors import RelayError
from relay_adaptors.sse import DONE, encode_data


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...


@dataclass(slots=True)
class StreamOutcome:
    """What the relay learned while streaming, for accounting after the last byte."""

    usage: dict[str, Any] | None = None
    error: RelayError | None = None
    first_chunk_at: float | None = None  # monotonic time the first content reached the client
    output_chars: int = 0  # streamed text, for an estimate when no usage ever arrives
    finished: bool = False

    def saw(self, chunk: dict[str, Any]) -> None:
        """Counts a chunk's generated text (and notes when the first one went out)."""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            n = len(delta.get("content") or "") + len(delta.get("reasoning_content") or "")
            for tc in delta.get("tool_calls") or ():
                n += len((tc.get("function") or {}).get("arguments") or "")
            if n:
                self.output_chars += n
                if self.first_chunk_at is None:
                    self.first_chunk_at = time.monotonic()


async def write_chat_stream(
    resp: Sink, stream: ChatStream, include_usage: bool, outcome: StreamOutcome
) -> None:
    """Chat chunks as `data:` frames, one write per upstream batch, `[DONE]` at the end."""
    async for batch in stream:
        frames: list[bytes] = []
        for item in batch:
            if isinstance(item, RelayError):
                # After the first byte the status line is gone: the error travels in-band.
                outcome.error = item
                frames.append(encode_data(jsonfast.dumps(item.body())))
                break
            if "usage" in item:
                use = item["usage"]
                if use:
                    outcome.usage = use
                if not include_usage:
                    if not item.get("choices"):
                        continue  # the usage-only chunk the client did not ask for
                    del item["usage"]
            outcome.saw(item)
            frames.append(encode_data(jsonfast.dumps(item)))
        if frames:
            await resp.write(b"".join(frames))
        if outcome.error is not None:
            return
    await resp.write(DONE)
    outcome.finished = True
