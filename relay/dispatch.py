"""Getting an answer from a channel: the first step of every model call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from adaptors.base import Call, ChatStream

from .router import Candidate


@dataclass(slots=True)
class Answer:
    candidate: Candidate
    call: Call
    result: Any  # a chat completion dict, or a ChatStream when streaming
    attempts: int

    @property
    def stream(self) -> ChatStream:
        return self.result

    def headers(self) -> dict[str, str]:
        h = {"x-relay-channel": self.candidate.channel.name, "x-relay-attempts": str(self.attempts)}
        if self.call.ignored_params:
            h["x-relay-ignored-params"] = ",".join(sorted(set(self.call.ignored_params)))
        return h


async def dispatch(
    candidates: list[Candidate], build: Callable[[Candidate], dict[str, Any]], request_id: str, stream: bool
) -> Answer:
    """Calls the channel for this request and returns once it has answered (for a stream:
    once the upstream accepted it, before any byte went to the client)."""
    candidate = candidates[0]
    call = Call(build(candidate), candidate.upstream_model, request_id, {"x-request-id": request_id})
    result = await (candidate.adaptor.open_stream(call) if stream else candidate.adaptor.complete(call))
    return Answer(candidate, call, result, 1)
