"""`responses: native`: the upstream speaks Responses; its bytes are relayed as they come and
watched on the side for what the ledger needs. Sans-IO: bytes in, facts into the outcome."""
from __future__ import annotations

from typing import Any

from relay_adaptors import jsonfast
from relay_adaptors.sse import SSEDecoder

from .outcome import StreamOutcome

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Events whose `delta` is generated text, counted for an estimate if the stream is cut.
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                          "response.reasoning_summary_text.delta", "response.reasoning_text.delta", "response.refusal.delta"})


def chat_usage(resp_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage in the chat shape the ledger reads."""
    if not isinstance(resp_usage, dict):
        return None
    return {
        "prompt_tokens": resp_usage.get("input_tokens", 0),
        "completion_tokens": resp_usage.get("output_tokens", 0),
        "prompt_tokens_details": {"cached_tokens": (resp_usage.get("input_tokens_details") or {}).get("cached_tokens", 0)},
        "completion_tokens_details": {"reasoning_tokens": (resp_usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)},
    }


class ResponsesTap:
    """Reads relayed Responses bytes (an event stream or one JSON body) into `outcome`: the
    usage as soon as the terminal event passes, the generated text's size until then."""

    def __init__(self, streaming: bool, outcome: StreamOutcome):
        self.sse = SSEDecoder() if streaming else None
        self.outcome = outcome
        self.body: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self.sse is None:
            self.body.append(data)
            return
        for ev in self.sse.feed(data):
            if ev.event in _TEXT_DELTAS or ev.event in _TERMINAL:
                try:
                    payload = jsonfast.loads(ev.data)
                except jsonfast.JSONDecodeError:
                    continue
                if not isinstance(payload, dict):
                    continue
                if ev.event in _TERMINAL:
                    response = payload.get("response")
                    self.outcome.usage = chat_usage(response.get("usage") if isinstance(response, dict) else None)
                elif isinstance(payload.get("delta"), str):
                    self.outcome.produced(len(payload["delta"]))

    def close(self) -> None:
        if self.sse is not None or not self.body:
            return
        try:
            payload = jsonfast.loads(b"".join(self.body))
        except jsonfast.JSONDecodeError:
            return
        if isinstance(payload, dict):
            self.outcome.usage = chat_usage(payload.get("usage"))
