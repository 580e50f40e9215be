"""Writes a chat stream to the client as chat-completions SSE."""
from __future__ import annotations

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import ChatStream, StreamItem
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import DONE

from .outcome import Sink, StreamOutcome


def chat_frames(batch: list[StreamItem], include_usage: bool, outcome: StreamOutcome, model: str) -> bytes:
    """One batch of chat chunks as `data:` frames, every chunk naming `model`; an error item
    ends the batch in-band (after the first byte the status line is gone) and is noted in
    `outcome`. The usage chunk and fields go out only to clients that asked for them."""
    dumps = jsonfast.dumps
    frames: list[bytes] = []
    for item in batch:
        if isinstance(item, RelayError):
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
    # `data: ` before and a blank line after each, in one join
    return b"data: " + b"\n\ndata: ".join(frames) + b"\n\n" if frames else b""


async def write_chat_stream(
    resp: Sink, stream: ChatStream, include_usage: bool, outcome: StreamOutcome, model: str
) -> None:
    """Chat chunks as `data:` frames, one write per upstream batch, `[DONE]` at the end."""
    async for batch in stream:
        if frames := chat_frames(batch, include_usage, outcome, model):
            await resp.write(frames)
        if outcome.error is not None:
            return
    await resp.write(DONE)
    outcome.finished = True
