"""What a background response has written so far, for any number of readers."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class EventLog:
    """A Sink that keeps every write; readers follow it from the start until it is closed.
    Held only while the run lasts (and by the readers following it)."""

    __slots__ = ("chunks", "closed", "_changed")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False
        self._changed = asyncio.Event()

    async def write(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def text(self) -> bytes:
        return b"".join(self.chunks)

    async def follow(self) -> AsyncIterator[bytes]:
        i = 0
        while True:
            changed = self._changed
            while i < len(self.chunks):
                yield self.chunks[i]
                i += 1
            if self.closed:
                return
            await changed.wait()
