"""What the relay learns while an answer goes out, for the lifecycle to settle after the last
byte (or the cancellation): filled as bytes pass, so nothing is lost when a client leaves."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.usage import Usage


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

    def took(self, item: dict[str, Any] | str) -> None:
        """Notes what one stream item (a chunk, or text alone) brings: usage, generated text."""
        if isinstance(item, str):
            self.produced(len(item))
            return
        if item.get("usage"):
            self.usage = item["usage"]
        self.saw(item)

    def saw(self, chunk: dict[str, Any]) -> None:
        """Counts a chat chunk's generated text."""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if not delta:
                continue
            text = chunks.text_alone(delta)
            if text is not None:
                self.produced(len(text))
                continue
            n = _length(delta.get("content")) + _length(delta.get("reasoning_content")) + _length(delta.get("refusal"))
            for tc in delta.get("tool_calls") or ():
                n += _length((tc.get("function") or {}).get("arguments"))
            self.produced(n)


def _length(value: Any) -> int:
    """The length of a relayed text; an upstream's value of any other type counts nothing."""
    return len(value) if isinstance(value, str) else 0


@dataclass(frozen=True, slots=True)
class Charge:
    """The tokens one call costs the tenant, as the ledger and the limits count them."""

    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0
    estimated: bool = False  # the upstream never reported usage: Relay's estimate

    @property
    def total(self) -> int:
        return self.input + self.output


def charge(usage: dict[str, Any] | None, outcome: StreamOutcome | None, status: int, reached_upstream: bool,
           estimate_in: Callable[[], int]) -> Charge:
    """The upstream's numbers when it reported them; else an estimate for whatever was sent
    to or came from an upstream (the prompt it already had, the text relayed); else nothing."""
    u = usage or (outcome.usage if outcome else None)
    if u:
        reported = Usage.from_chat(u)
        return Charge(reported.input, reported.cached, reported.output, reported.reasoning)
    produced = outcome is not None and outcome.first_chunk_at is not None
    if not (status < 400 or produced or reached_upstream):
        return Charge()  # nothing reached or came from an upstream: nothing to charge
    chars = outcome.output_chars if outcome else 0
    return Charge(estimate_in(), 0, (chars + 3) // 4, 0, True)
