"""The adaptor interface: what the relay needs from a channel type, and nothing more.

Canonical internal format is OpenAI chat: a chat request dict in, a chat completion dict or a
stream of chat chunk dicts out. Pure conversion lives in each adaptor's own modules; the only
I/O is in `complete` / `open_stream`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, AsyncIterator, Protocol, runtime_checkable

from .errors import RelayError

Chunk = dict[str, Any]
# A stream yields batches of chat chunks, one batch per upstream read, so the relay can write
# a batch with one syscall. An upstream failure after the stream began arrives as a
# RelayError item (not an exception), last in its batch, so what came before it is kept.
StreamItem = Chunk | RelayError
ChatStream = AsyncIterator[list[StreamItem]]


@dataclass(slots=True)
class Call:
    """One attempt of one request on one channel."""

    request: dict[str, Any]  # canonical chat request; `model` is the public name
    upstream_model: str
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)  # extra headers to forward upstream
    ignored_params: list[str] = field(default_factory=list)  # request fields the channel left out
    state: dict[str, Any] = field(default_factory=dict)  # what build_request tells the parsers


class StreamConverter(Protocol):
    """Sans-IO: upstream bytes in, chat chunks out. `close()` flushes at end of stream."""

    def feed(self, data: bytes) -> list[StreamItem]: ...

    def close(self) -> list[StreamItem]: ...


class Adaptor(Protocol):
    name: str

    async def complete(self, call: Call) -> dict[str, Any]:
        """A non-streaming chat completion. Raises RelayError."""
        ...

    async def open_stream(self, call: Call) -> ChatStream:
        """Starts a stream; raises RelayError while nothing has been received (failover is
        still possible). The returned iterator must be closed with `aclose()`."""
        ...


@dataclass(slots=True)
class RawUpstream:
    status: int
    content_type: str
    chunks: AsyncGenerator[bytes, None]


@runtime_checkable
class NativeResponses(Protocol):
    """Optional: the upstream may speak the Responses API itself (when `native_responses` is
    true); the client's body is forwarded with the model renamed and the answer relayed as is."""

    native_responses: bool

    async def responses_passthrough(self, call: Call) -> RawUpstream: ...
