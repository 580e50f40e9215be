"""Anthropic Messages stream -> chat chunks (sans-IO).

`EventConverter.event(dict)` handles one parsed Anthropic event (the Claude CLI adaptor feeds
it the `stream_event` payloads); `SSEConverter` adds the byte-level SSE decoding for HTTP.
"""
from __future__ import annotations

from typing import Any

from ..kernel import chunks, jsonfast
from ..kernel.base import StreamItem
from ..kernel.errors import RelayError, object_field, upstream_bad_response
from ..kernel.sse import SSEDecoder, event
from ..kernel.usage import Usage
from .errors import stream_error
from .thinking import encode_block
from .usage import finish_reason

# The blocks a chat answer carries; the deltas of any other (server tool use, its results) are not part of it.
_CHAT_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use", "json"})


class EventConverter:
    def __init__(self, channel: str, model: str, json_tool: str | None = None):
        self.channel = channel
        self.model = model
        self.json_tool = json_tool
        self.id = chunks.completion_id()
        self.created = chunks.now()
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.blocks: dict[int, dict[str, Any]] = {}  # Anthropic block index -> block state
        self.tool_count = 0
        self.started = False
        self.finished = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunks.chunk(self.id, self.model, self.created, delta, finish)

    def event(self, ev: dict[str, Any]) -> list[StreamItem]:
        kind = ev.get("type")
        if kind == "message_start":
            self.usage.update(object_field(object_field(ev, "message"), "usage"))
            self.started = True
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(_index(ev), object_field(ev, "content_block"))
        if kind == "content_block_delta":
            return self._block_delta(_index(ev), object_field(ev, "delta"))
        if kind == "content_block_stop":
            return self._block_stop(_index(ev))
        if kind == "message_delta":
            self.stop_reason = object_field(ev, "delta").get("stop_reason") or self.stop_reason
            self.usage.update({k: v for k, v in object_field(ev, "usage").items() if v is not None})
            return []
        if kind == "message_stop":
            self.finished = True
            return [
                self._chunk({}, finish_reason(self.stop_reason, self.tool_count > 0)),
                chunks.usage_chunk(self.id, self.model, self.created, Usage.from_anthropic(self.usage).chat()),
            ]
        if kind == "error":
            self.finished = True
            return [stream_error(self.channel, ev)]
        return []  # ping and event types added later

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamItem]:
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind}
        self.blocks[index] = state
        if kind == "text":
            text = _string(block, "text")
            return [self._chunk({"content": text})] if text else []
        if kind == "thinking":
            state.update(thinking=[_string(block, "thinking")], signature=_string(block, "signature"))
            return []
        if kind == "redacted_thinking":
            return [self._chunk({"reasoning_signature": encode_block({"type": "redacted_thinking", "data": block.get("data", "")})})]
        if kind == "tool_use":
            if block.get("name") == self.json_tool:
                state["type"] = "json"
                return []
            state["tool_index"] = self.tool_count
            self.tool_count += 1
            return [self._chunk({"tool_calls": [{
                "index": state["tool_index"], "id": _string(block, "id"), "type": "function",
                "function": {"name": _string(block, "name"), "arguments": ""},
            }]})]
        return []  # server tool blocks etc. are not part of a chat answer

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[StreamItem]:
        state = self._chat_block(index)
        if state is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"))
        if kind == "thinking_delta" and (thinking := _string(delta, "thinking")):
            _expect(state, index, kind, "thinking")
            state["thinking"].append(thinking)
            return [self._chunk({"reasoning_content": thinking})]
        if kind == "signature_delta":
            state["signature"] = state.get("signature", "") + _string(delta, "signature")
            return []
        if kind == "input_json_delta" and (partial := _string(delta, "partial_json")):
            _expect(state, index, kind, "tool_use", "json")
            if state["type"] == "json":
                return [self._chunk({"content": partial})]
            return [self._chunk({"tool_calls": [{"index": state["tool_index"], "function": {"arguments": partial}}]})]
        return []

    def text_delta(self, index: int, text: str) -> list[StreamItem]:
        """A `text_delta` of block `index`, as `event` reads it."""
        return self._text(text) if self._chat_block(index) is not None else []

    def _chat_block(self, index: int) -> dict[str, Any] | None:
        """The state of block `index`, a delta's target; None for a block a chat answer does not carry."""
        state = self.blocks.get(index)
        if state is None:
            raise ValueError(f"content_block_delta for block {index} before its content_block_start")
        return state if state["type"] in _CHAT_BLOCKS else None

    def _text(self, text: Any) -> list[StreamItem]:
        if not text:
            return []
        if not isinstance(text, str):
            raise ValueError("a text_delta whose text is not a string")
        return [text]  # a chunk of text alone (base.StreamItem)

    def _block_stop(self, index: int) -> list[StreamItem]:
        state = self.blocks.get(index) or {}
        if state.get("type") == "thinking":
            block = {"type": "thinking", "thinking": "".join(state["thinking"]), "signature": state["signature"]}
            return [self._chunk({"reasoning_signature": encode_block(block)})]
        return []

    def close(self) -> list[StreamItem]:
        if self.finished:
            return []
        return [upstream_bad_response(self.channel, "the stream ended before message_stop")]


def _parsed(data: str) -> dict[str, Any]:
    event = jsonfast.loads_event(data)
    if type(event) is not dict:
        raise ValueError("an Anthropic stream event is not a JSON object")
    return event


def _string(obj: dict[str, Any], key: str) -> str:
    """A text field ("" when absent or null); a value of another type is an upstream error."""
    value = obj.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise ValueError(f"a {obj.get('type')} whose {key} is not a string")
    return value


def _index(ev: dict[str, Any]) -> int:
    value = ev.get("index", 0)
    if type(value) is not int:
        raise ValueError(f"{ev.get('type')}.index is not an integer")
    return value


def _expect(state: dict[str, Any], index: int, delta: str, *blocks: str) -> None:
    """A delta of one kind of block sent for another is an upstream error, not a crash."""
    if state["type"] not in blocks:
        raise ValueError(f"a {delta} for block {index}, which is a {state['type']} block")


# Anthropic's text delta event, exactly as it sends it: this head, the block index, this
# middle, the text, and `}}`. The index is the open text block's, written as JSON writes it.
_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_MIDDLE = b',"delta":{"type":"text_delta","text":"'
_TAIL = b'"}}'


class SSEConverter:
    """Bytes of an Anthropic SSE stream -> chat chunks.

    Most frames of an answer are text deltas of its open text block, in exactly the shape
    Anthropic sends: those are read by their bytes, two comparisons and a parse of the text
    alone (it must parse as one JSON string, so a frame with any other field is never
    misread). Every other frame, and a frame in any other shape, is read as an event."""

    def __init__(self, channel: str, model: str, json_tool: str | None = None):
        self.events = EventConverter(channel, model, json_tool)
        self._sse = SSEDecoder()
        self._text_head: bytes | None = None  # a text delta's bytes before its text, for the open text block
        self._text_index: int | None = None

    def feed(self, data: bytes) -> list[StreamItem]:
        out: list[StreamItem] = []
        events = self.events
        loads = jsonfast.loads
        head = self._text_head
        for frame in self._sse.frames(data):
            if head is not None and frame.startswith(head) and frame.endswith(_TAIL):
                try:
                    text = loads(frame[len(head) - 1:-2])
                except jsonfast.JSONDecodeError:
                    text = None
                if type(text) is str:
                    if text:
                        out.append(text)  # text alone (base.StreamItem), as EventConverter._text gives it
                    continue
            if (ev := event(frame)) is not None and ev.data:
                parsed = _parsed(ev.data)
                out += events.event(parsed)
                if parsed.get("type") == "content_block_start":
                    head = self._opened(_index(parsed))
        return out

    def _opened(self, index: int) -> bytes | None:
        """After block `index` started: the text head for it if it is a text block (the
        EventConverter has just recorded it); a block of another kind at the same index ends
        the byte reading of the old one."""
        if self.events.blocks[index]["type"] == "text":
            self._text_index = index
            self._text_head = _HEAD + str(index).encode() + _MIDDLE
        elif index == self._text_index:
            self._text_index = self._text_head = None
        return self._text_head

    def close(self) -> list[StreamItem]:
        out = self.feed(b"")
        for ev in self._sse.close():
            out += self.events.event(_parsed(ev.data)) if ev.data else []
        return out + self.events.close()


__all__ = ["EventConverter", "SSEConverter", "RelayError"]
