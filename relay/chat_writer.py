"""Writes a chat stream to the client as chat-completions SSE."""
from __future__ import annotations

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import ChatStream
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import DONE

from .outcome import Sink, StreamOutcome


async def write_chat_stream(
    resp: Sink, stream: ChatStream, include_usage: bool, outcome: StreamOutcome, model: str
) -> None:
    """Chat chunks as `data:` frames, one write per upstream batch, `[DONE]` at the end;
    every chunk names `model` (the name the client asked for)."""
    dumps = jsonfast.dumps
    async for batch in stream:
        frames: list[bytes] = []
        for item in batch:
            if isinstance(item, RelayError):
                # After the first byte the status line is gone: the error travels in-band.
                outcome.error = item
                frames.append(dumps(item.body()))
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
            item["model"] = model
            frames.append(dumps(item))
        if frames:  # `data: ` before and a blank line after each, in one join
            await resp.write(b"data: " + b"\n\ndata: ".join(frames) + b"\n\n")
        if outcome.error is not None:
            return
    await resp.write(DONE)
    outcome.finished = True
