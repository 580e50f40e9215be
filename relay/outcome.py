"""What the relay learns while an answer goes out, for the lifecycle to settle after the last
byte (or the cancellation): filled as bytes pass, so nothing is lost when a client leaves."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from relay_adaptors.errors import RelayError


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...


@dataclass(slots=True)
class StreamOutcome:
    usage: dict[str, Any] | None = None  # chat-shaped usage, as soon as the upstream reported it
    error: RelayError | None = None  # the in-band error that ended the answer
    first_chunk_at: float | None = None  # monotonic time the first content reached the client
    output_chars: int = 0  # generated text relayed, for an estimate when no usage ever arrives
    finished: bool = False  # the whole answer went out

    def produced(self, chars: int) -> None:
        """Counts relayed generated text (and notes when the first of it went out)."""
        if chars:
            self.output_chars += chars
            if self.first_chunk_at is None:
                self.first_chunk_at = time.monotonic()

    def saw(self, chunk: dict[str, Any]) -> None:
        """Counts a chat chunk's generated text."""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            n = len(delta.get("content") or "") + len(delta.get("reasoning_content") or "")
            for tc in delta.get("tool_calls") or ():
                n += len((tc.get("function") or {}).get("arguments") or "")
            self.produced(n)
