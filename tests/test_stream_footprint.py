"""What an open stream holds while it waits for a slow upstream's next chunk. Every
coroutine frame it waits in stays allocated for as long as the stream is open (a few
hundred bytes each, times thousands of streams: `python -m tests.bench.memory` measures
the whole), so helpers awaited around the handler or the body read are not free."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import relay
import relay_adaptors

from .support import ACME_KEY, failover_config

OURS = (str(Path(relay.__file__).parent), str(Path(relay_adaptors.__file__).parent))
# errors_middleware, virtual_keys, chat_completions, then ModelCall.stream, write_chat_stream,
# HttpAdaptor._relay_stream (converted) or ModelCall.relay, _pump, HttpAdaptor._raw_chunks (passthrough)
FRAME_BUDGET = 6


def waiting_in(coro: Any) -> list[tuple[str, str]]:
    """(file, function) of each coroutine / async generator frame down the await chain."""
    chain: list[tuple[str, str]] = []
    obj = coro
    while obj is not None:
        code = getattr(obj, "cr_code", None) or getattr(obj, "ag_code", None)
        if code is not None:
            chain.append((code.co_filename, code.co_qualname))
            obj = obj.cr_await if hasattr(obj, "cr_await") else obj.ag_await
        elif type(obj).__name__ == "async_generator_asend":  # `async for`: the generator is behind it
            obj = next((r for r in gc.get_referents(obj) if hasattr(r, "ag_code")), None)
        else:
            obj = None  # a future: the bottom
    return chain


@pytest.mark.parametrize(("primary", "reader"), [("anthropic:paced-400", "HttpAdaptor._relay_stream"),  # converted
                                               ("paced-400", "HttpAdaptor._raw_chunks")])  # chat to chat: relayed as is
async def test_a_stream_waiting_on_its_upstream_holds_few_frames_of_relays_own(make_relay, fake_openai, fake_anthropic, primary, reader):
    relay_ = await make_relay(failover_config(fake_openai.url, fake_anthropic.url, primary).replace("idle: 0.5", "idle: 2"))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay_.url + "/v1/chat/completions", json={"model": "fo", "messages": [{"role": "user", "content": "hi"}],
                                                                        "stream": True}, headers={"Authorization": f"Bearer {ACME_KEY}"})
        await resp.content.readuntil(b"\n\n")  # the stream is open; the next chunk is 400 ms away
        chains = [waiting_in(t.get_coro()) for t in asyncio.all_tasks()]
        resp.close()
    handler = next(c for c in chains if any(name == "chat_completions" for _, name in c))
    ours = [name for file, name in handler if file.startswith(OURS)]
    assert ours[-1] == reader  # the walk reached the body read
    assert len(ours) <= FRAME_BUDGET, f"an open stream waits in {len(ours)} frames of Relay's own: {ours}"
