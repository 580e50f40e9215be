"""Real aiohttp servers on loopback that replay recorded upstream transcripts.

Each fake records what it received (path, headers, parsed body) so tests can assert on the
request Relay forwarded, and can split a replayed stream per event, per byte or at random
points to exercise the relay's stream parsing.
"""
from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class Received:
    path: str
    headers: CIMultiDict[str]
    body: Any


@dataclass
class FakeUpstream:
    fixtures: Path
    requests: list[Received] = field(default_factory=list)
    chunking: str = "event"  # event | byte | random
    seed: int = 0
    frame_delay: float = 0.0
    closed_early: int = 0  # streams the client cut off before the fake finished writing
    closed_at: float = 0.0  # loop time of the last such cut

    def pieces(self, data: bytes) -> list[bytes]:
        if self.chunking == "byte":
            return [data[i : i + 1] for i in range(len(data))]
        if self.chunking == "random":
            rng = random.Random(self.seed)
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, max(1, len(data) // 40))))
            return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        return [p + b"\n\n" for p in data.split(b"\n\n") if p]

    async def record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(Received(request.path, CIMultiDict(request.headers), body))
        return body

    @property
    def last(self) -> Received:
        return self.requests[-1]

    async def replay(self, request: web.Request, data: bytes, *, hang_after: int | None = None,
                     delay: float | None = None, content_type: str = "text/event-stream") -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        try:
            for i, piece in enumerate(self.pieces(data)):
                if hang_after is not None and i == hang_after:
                    await asyncio.sleep(3600)
                if delay or self.frame_delay:
                    await asyncio.sleep(delay or self.frame_delay)
                await resp.write(piece)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.closed_early += 1
            self.closed_at = asyncio.get_running_loop().time()
            raise
        return resp

    def fixture(self, name: str) -> bytes:
        return (self.fixtures / name).read_bytes()
