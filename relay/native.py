"""`responses: native`: the upstream speaks Responses. Its frames are relayed as they come,
byte for byte, except the few that carry the response object, whose `model` becomes the name
the client asked for (the same rule as every other path). On the side the tap reads what the
ledger needs. Sans-IO: bytes in, bytes out, facts into the outcome."""
from __future__ import annotations

from typing import Any

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.sse import encode_event
from relay_adaptors.kernel.usage import Usage

from .outcome import StreamOutcome
from .sse_scan import EventScanner, frame_data

_TERMINAL = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})
_LIFECYCLE = _TERMINAL | {b"response.created", b"response.in_progress", b"response.queued"}
# Only the lifecycle events carry the response object: the frames to read.
_RESPONSE = (b'"response":',)
# Delta events (generated text, arguments, reasoning) are counted, not parsed, for an estimate
# if the stream is cut before its usage arrives. A delta carries about one token.
_DELTA = b".delta\n"
CHARS_PER_DELTA = 4
MAX_BODY = 64 << 20  # a non-streamed answer is held whole to rename its model; past this it passes as is


def chat_usage(resp_usage: Any) -> dict[str, Any] | None:
    """Responses usage in the chat shape the ledger reads."""
    return Usage.from_responses(resp_usage).chat() if isinstance(resp_usage, dict) else None


class ResponsesTap:
    """Watches relayed Responses bytes (an event stream or one JSON body)."""

    def __init__(self, streaming: bool, outcome: StreamOutcome, model: str, response_id: str | None = None,
                 hold_final: bool = False, echo: dict[str, Any] | None = None):
        self.frames = EventScanner(_RESPONSE, _DELTA) if streaming else None
        self.outcome = outcome
        self.model = model
        self.response_id = response_id  # Relay's id for the response (stored responses), else the upstream's
        self.echo = echo or {}  # the request fields Relay resolved itself (previous_response_id, store, ...)
        # Stored responses: the terminal event (or the whole body) is held back until the
        # response is stored, so a client that continues at once finds it.
        self.hold_final = hold_final
        self.final: dict[str, Any] | None = None
        self.holding = False
        self.held = b""
        self.body: list[bytes] = []
        self.size = 0
        self.ended = False

    def release(self) -> tuple[dict[str, Any] | None, bytes]:
        """The final response held back (once) and the bytes to relay after storing it."""
        final, held = self.final, self.held
        self.final, self.held, self.holding = None, b"", False
        return final, held

    def feed(self, data: bytes) -> bytes:
        """The bytes to relay for `data`."""
        if self.frames is None:
            self.size += len(data)
            if self.size > MAX_BODY:
                held, self.body = b"".join(self.body) + data, []
                return held
            self.body.append(data)
            return b""
        scan = self.frames.push(data)
        if scan.counted:
            self.outcome.produced(CHARS_PER_DELTA * scan.counted)
        if not scan.hits and not self.holding:
            return scan.whole  # deltas only: relayed as they came, not one frame visited
        whole, out, at = scan.whole, [], 0
        hold_from = 0 if self.holding else None  # everything from the terminal event on waits with it
        for start, end, event in scan.hits:
            out.append(whole[at:start])
            frame = self._frame(event, whole[start:end])
            if hold_from is None and self.holding:
                hold_from = len(out)
            out.append(frame)
            at = end
        out.append(whole[at:])
        if hold_from is None:
            return b"".join(out)
        self.held += b"".join(out[hold_from:])
        return b"".join(out[:hold_from])

    def _frame(self, event: bytes, frame: bytes) -> bytes:
        if event not in _LIFECYCLE:
            return frame
        try:
            payload = jsonfast.loads(frame_data(frame))
        except jsonfast.JSONDecodeError:
            return frame
        if not isinstance(payload, dict):
            return frame
        response = payload.get("response")
        if not isinstance(response, dict):
            return frame
        response["model"] = self.model
        response.update(self.echo)
        if self.response_id is not None:
            response["id"] = self.response_id
        frame = encode_event(event.decode(), jsonfast.dumps(payload))
        if event in _TERMINAL:
            self.outcome.usage = chat_usage(response.get("usage"))
            if self.hold_final:
                self.final, self.holding = response, True
        return frame

    def end(self, cut: bool = False) -> bytes:
        """The upstream finished: what is left to relay. Also called (and its bytes dropped)
        when the answer was cut, so what was seen is kept for the ledger."""
        if self.ended:
            return b""
        self.ended = True
        if self.frames is not None:
            rest = self.frames.flush()
            if self.holding:
                self.held, rest = self.held + rest, b""
            return rest
        body, self.body = b"".join(self.body), []
        if not body:
            return b""
        try:
            payload = jsonfast.loads(body)
        except jsonfast.JSONDecodeError:
            return body
        if not isinstance(payload, dict):
            return body
        self.outcome.usage = chat_usage(payload.get("usage"))
        if "model" not in payload or payload.get("object") != "response":
            return body  # an error body, or something else: as the upstream sent it
        payload["model"] = self.model
        payload.update(self.echo)
        if self.response_id is not None:
            payload["id"] = self.response_id
        out = jsonfast.dumps(payload)
        if self.hold_final:
            self.final, self.held = payload, out
            return b""
        return out
