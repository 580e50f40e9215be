"""The adaptor contract: what the relay needs from a channel type, and nothing more.

Built-in channels and third-party plugins implement exactly this. Canonical internal format
is OpenAI chat: a chat request dict in, a chat completion dict or a stream of chat chunk
dicts out. Pure conversion lives in each adaptor's own modules; the only I/O is in
`complete` / `open_stream` (and the optional passthroughs below).

What a channel can do is declared once, in `capabilities`; the relay reads that value and
never probes an adaptor with getattr/isinstance or compares channel-type names.
"""
from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import RelayError

Chunk = dict[str, Any]
# A stream yields batches of chat chunks, one batch per upstream read, so the relay can write
# a batch with one syscall. An upstream failure after the stream began arrives as a
# RelayError item (not an exception), last in its batch, so what came before it is kept.
# A str item is text alone: the chunk `chunks.chunk(id, model, created, {"content": text})`
# with the id, model and created of the last chunk before it (`chunks.expand` spells it out).
# Most of an answer is such deltas, and a str costs no chunk to build, read or write; it
# never comes before the stream's first chunk.
StreamItem = Chunk | str | RelayError
# An async generator: whoever opened it must close it (`aclose()`), which also stops the
# upstream (closes the connection, kills the process).
ChatStream = AsyncGenerator[list[StreamItem], None]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one channel can do, declared by its adaptor."""

    native_chat: bool = False  # streamed chat answers come back as the upstream's own chat SSE (implements NativeChat)
    native_responses: bool = False  # Responses bodies go upstream untouched (implements NativeResponses)
    native_messages: bool = False  # Anthropic Messages bodies go upstream untouched (implements NativeMessages)
    reasoning_items: bool = False  # replayed reasoning (thinking blocks) survives the chat form
    client_tools: bool = True  # the client's function tools can be offered to the model
    counts_processes: bool = False  # runs local processes, counted by `running` (implements ProcessCounter)
    reports_cost: bool = False  # fills CallReport.cost_usd
    counts_tokens: bool = False  # can ask its upstream to count a request's tokens (implements TokenCounter)
    resumes_sessions: bool = False  # keeps a conversation upstream: CallReport.session_id, Call.resume


@dataclass(slots=True)
class CallReport:
    """What an adaptor learned during one call, for the ledger and the client's headers."""

    cost_usd: float | None = None  # the upstream's own price for the call, when it reports one
    upstream_model: str | None = None  # the model name the upstream answered with
    session_id: str | None = None  # the upstream conversation this call left behind (resumes_sessions)


@dataclass(frozen=True, slots=True)
class Resume:
    """Continue an upstream conversation instead of replaying it (resumes_sessions channels)."""

    session_id: str  # a CallReport.session_id this channel gave for the same owner
    new_from: int  # index in request["messages"] of the first message the session has not seen


@dataclass(slots=True)
class Call:
    """One attempt of one request on one channel."""

    request: dict[str, Any]  # canonical chat request; `model` is the public name
    upstream_model: str
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)  # extra headers to forward upstream
    ignored_params: list[str] = field(default_factory=list)  # request fields the channel left out
    report: CallReport = field(default_factory=CallReport)
    json_tool: str | None = None  # the tool that carries response_format (channels without JSON mode)
    owner: str = ""  # the tenant: state a channel keeps (sessions) is kept per owner, never shared
    # When set, the channel may resume the session and send only messages[new_from:]; if it
    # cannot (the session is gone), it must answer from the whole request as usual.
    resume: Resume | None = None


class StreamConverter(Protocol):
    """Sans-IO: upstream bytes in, chat chunks out. `close()` flushes at end of stream."""

    def feed(self, data: bytes) -> list[StreamItem]: ...

    def close(self) -> list[StreamItem]: ...


class Adaptor(Protocol):
    name: str
    capabilities: Capabilities

    async def complete(self, call: Call) -> dict[str, Any]:
        """A non-streaming chat completion. Raises RelayError."""
        ...

    async def open_stream(self, call: Call) -> ChatStream:
        """Starts a stream; raises RelayError while nothing has been received (failover is
        still possible). The returned generator must be closed with `aclose()`."""
        ...


@dataclass(slots=True)
class RawUpstream:
    """An upstream answer relayed as bytes (same-protocol passthrough)."""

    status: int
    content_type: str
    chunks: AsyncGenerator[bytes, None]
    headers: dict[str, str] = field(default_factory=dict)  # upstream headers worth passing on
    failure: RelayError | None = None  # why the bytes stopped short, once they did (the upstream failed mid-answer)


class NativeChat(Protocol):
    """Declared by `Capabilities.native_chat`: a streamed chat request is sent as `open_stream`
    would send it, and the upstream's chat-completions SSE comes back as bytes (Relay renames
    the model and reads usage and errors from the frames that carry them). An answer that is
    not an event stream is refused before anything reaches the client."""

    async def chat_passthrough(self, call: Call) -> RawUpstream: ...


class NativeResponses(Protocol):
    """Declared by `Capabilities.native_responses`: the client's Responses body is forwarded
    with the model renamed and the answer relayed as is."""

    async def responses_passthrough(self, call: Call) -> RawUpstream: ...


class NativeMessages(Protocol):
    """Declared by `Capabilities.native_messages`: the client's Anthropic Messages body is
    forwarded with the model renamed and the answer relayed as is."""

    async def messages_passthrough(self, call: Call) -> RawUpstream: ...


class ProcessCounter(Protocol):
    """Declared by `Capabilities.counts_processes`."""

    running: int


class TokenCounter(Protocol):
    """Declared by `Capabilities.counts_tokens`: `call.request` is an Anthropic Messages body."""

    async def count_tokens(self, call: Call) -> int: ...
