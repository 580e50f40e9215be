"""Writes a chat stream to the client as chat-completions SSE."""
from __future__ import annotations

from typing import Any

from relay_adaptors.kernel import chunks, jsonfast
from relay_adaptors.kernel.base import ChatStream, StreamItem
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import DONE

from .outcome import Sink, StreamOutcome

_TEXT_TAIL = b'},"finish_reason":null}]}'


class ChatFrames:
    """Batches of one chat stream as `data:` frames, every chunk naming `model`; an error
    item ends the batch in-band (after the first byte the status line is gone) and is noted
    in `outcome`. The usage chunk and fields go out only to clients that asked for them.
    Text alone (a str item) is written into the bytes of its chunk around the text's JSON,
    the same bytes its chunk would encode to, with no chunk built."""

    __slots__ = ("include_usage", "outcome", "model", "last", "text_head")

    def __init__(self, include_usage: bool, outcome: StreamOutcome, model: str):
        self.include_usage = include_usage
        self.outcome = outcome
        self.model = model
        self.last: dict[str, Any] | None = None  # the chunk a text item takes its id and created from
        self.text_head: bytes | None = None  # the bytes of that chunk up to a text item's text

    def __call__(self, batch: list[StreamItem]) -> bytes:
        dumps = jsonfast.dumps
        outcome = self.outcome
        frames: list[bytes] = []
        for item in batch:
            if isinstance(item, str):
                outcome.produced(len(item))
                frames.append((self.text_head or self._text_head()) + dumps(item) + _TEXT_TAIL)
                continue
            if isinstance(item, RelayError):
                outcome.error = item
                frames.append(dumps(item.body()))
                break
            if self.last is not item:
                self.last, self.text_head = item, None
            if "usage" in item:
                use = item["usage"]
                if use:
                    outcome.usage = use
                if not self.include_usage:
                    if not item.get("choices"):
                        continue  # the usage-only chunk the client did not ask for
                    del item["usage"]
            outcome.saw(item)
            item["model"] = self.model
            frames.append(dumps(item))
        # `data: ` before and a blank line after each, in one join
        return b"data: " + b"\n\ndata: ".join(frames) + b"\n\n" if frames else b""

    def _text_head(self) -> bytes:
        last = self.last or self._first()
        cid: Any = last.get("id")
        created: Any = last.get("created")
        empty = jsonfast.dumps(chunks.chunk(cid, self.model, created, {"content": ""}))
        self.text_head = empty[: -len(b'""' + _TEXT_TAIL)]
        return self.text_head

    def _first(self) -> dict[str, Any]:
        """A stream that began with text (which base.StreamItem rules out) still gets whole chunks."""
        self.last = chunks.chunk(chunks.completion_id(), self.model, chunks.now(), {})
        return self.last


async def write_chat_stream(
    resp: Sink, stream: ChatStream, include_usage: bool, outcome: StreamOutcome, model: str
) -> None:
    """Chat chunks as `data:` frames, one write per upstream batch, `[DONE]` at the end."""
    frames_of = ChatFrames(include_usage, outcome, model)
    async for batch in stream:
        if frames := frames_of(batch):
            await resp.write(frames)
        if outcome.error is not None:
            return
    await resp.write(DONE)
    outcome.finished = True
