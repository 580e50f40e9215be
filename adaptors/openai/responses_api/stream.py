"""Responses stream events -> chat chunks (sans-IO), the reverse of the shared bridge.

    machine = ChatFromResponses(channel, model)
    chunks = machine.event(parsed_event)        # per Responses event
    chunks += machine.close()                   # at end of stream

`ResponsesSSEConverter` adds the byte-level SSE decoding for HTTP. Tool calls get chat
`tool_calls` indices densely, in the order their items are added, so parallel calls stay
distinct even when their argument deltas interleave. Exactly one terminal event ends the
stream: `response.completed` / `response.incomplete` (a finish chunk and a usage chunk) or
`response.failed` / `error` (a RelayError item, which the relay sends as an error frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ...kernel import chunks, jsonfast
from ...kernel.base import StreamItem
from ...kernel.errors import object_field, upstream_bad_response
from ...kernel.sse import SSEDecoder, SSEEvent, event
from .outcome import chat_usage, completion_id, failure, finish_reason


class Phase(Enum):
    NEW = "new"  # nothing yet; `response.created` must come first
    STREAMING = "streaming"
    DONE = "done"  # a terminal event was seen; anything after it is ignored


@dataclass(slots=True)
class _Call:
    index: int  # the chat tool_calls index
    sent: int = 0  # characters of arguments already sent



def _int(ev: dict[str, Any], key: str, default: int | None = None) -> int:
    value = ev.get(key, default)
    if not isinstance(value, int):
        raise ValueError(f"{ev.get('type')} has no integer {key}")
    return value


class ChatFromResponses:
    def __init__(self, channel: str, model: str):
        self.channel = channel
        self.model = model  # replaced by the model the upstream names
        self.id = chunks.completion_id()
        self.created = chunks.now()
        self.phase = Phase.NEW
        self.calls: dict[int, _Call] = {}  # output_index -> call
        self.text_sent: dict[tuple[int, int], int] = {}  # (output_index, content_index) -> characters sent
        self.reasoning_at: tuple[int, int] | None = None  # the summary part reasoning deltas last came from

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunks.chunk(self.id, self.model, self.created, delta, finish)

    def event(self, ev: dict[str, Any]) -> list[StreamItem]:
        kind = ev.get("type")
        if self.phase is Phase.DONE:
            return []
        if kind == "error":  # may come at any point, even first
            self.phase = Phase.DONE
            return [failure(self.channel, ev)]
        if self.phase is Phase.NEW:
            if kind != "response.created":
                raise ValueError(f"the Responses stream began with {kind!r}, not response.created")
            return self._created(object_field(ev, "response"))
        match kind:
            case "response.output_item.added":
                return self._item_added(_int(ev, "output_index"), object_field(ev, "item"))
            case "response.output_text.delta":
                return self.text_delta(ev)
            case "response.output_text.done":
                return self._text_done(_int(ev, "output_index"), _int(ev, "content_index", 0), ev.get("text"))
            case "response.refusal.delta" if isinstance(ev.get("delta"), str) and ev["delta"]:
                return [self._chunk({"refusal": ev["delta"]})]
            case "response.function_call_arguments.delta":
                return self._arguments(self._call(ev), ev.get("delta"))
            case "response.function_call_arguments.done":
                return self._arguments_done(self._call(ev), ev.get("arguments"))
            case "response.output_item.done":
                return self._item_done(_int(ev, "output_index"), object_field(ev, "item"))
            case "response.reasoning_summary_text.delta":
                return self._reasoning((_int(ev, "output_index"), _int(ev, "summary_index", 0)), ev.get("delta"))
            case "response.reasoning_text.delta":  # raw reasoning, from servers that show it (gpt-oss)
                return self._reasoning((_int(ev, "output_index"), -1 - _int(ev, "content_index", 0)), ev.get("delta"))
            case "response.completed" | "response.incomplete":
                return self._finished(object_field(ev, "response"))
            case "response.failed":
                self.phase = Phase.DONE
                return [failure(self.channel, object_field(ev, "response").get("error"))]
            case _:
                return []  # in_progress, part added/done, hosted tool progress, future event types

    def close(self) -> list[StreamItem]:
        if self.phase is Phase.DONE:
            return []
        return [upstream_bad_response(self.channel, "the Responses stream ended before its terminal event")]

    # --- events --------------------------------------------------------------------------
    def _created(self, response: dict[str, Any]) -> list[StreamItem]:
        self.phase = Phase.STREAMING
        self.id = completion_id(response.get("id"))
        if isinstance(response.get("created_at"), int):
            self.created = response["created_at"]
        if isinstance(response.get("model"), str) and response["model"]:
            self.model = response["model"]
        return [self._chunk({"role": "assistant", "content": ""})]

    def _item_added(self, output_index: int, item: dict[str, Any]) -> list[StreamItem]:
        if item.get("type") != "function_call":
            return []
        if output_index in self.calls:
            raise ValueError(f"output item {output_index} was added twice")
        call = self.calls[output_index] = _Call(len(self.calls))
        args = item.get("arguments") or ""
        call.sent = len(args)
        return [self._chunk({"tool_calls": [{"index": call.index, "id": item.get("call_id") or item.get("id"), "type": "function",
                                             "function": {"name": item.get("name") or "", "arguments": args}}]})]

    def _call(self, ev: dict[str, Any]) -> _Call:
        call = self.calls.get(_int(ev, "output_index"))
        if call is None:
            raise ValueError(f"{ev.get('type')} for output item {ev.get('output_index')}, which is not a function call that was added")
        return call

    def _arguments(self, call: _Call, delta: Any) -> list[StreamItem]:
        if not isinstance(delta, str) or not delta:
            return []
        call.sent += len(delta)
        return [self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": delta}}]})]

    def _arguments_done(self, call: _Call, arguments: Any) -> list[StreamItem]:
        """Servers that send the arguments only whole (or finish them here) lose nothing."""
        if isinstance(arguments, str) and len(arguments) > call.sent:
            return self._arguments(call, arguments[call.sent:])
        return []

    def text_delta(self, ev: dict[str, Any]) -> list[StreamItem]:
        """A `response.output_text.delta` while streaming."""
        return self._text(_int(ev, "output_index"), _int(ev, "content_index", 0), ev.get("delta"))

    def _text(self, output_index: int, content_index: int, delta: Any) -> list[StreamItem]:
        if not isinstance(delta, str) or not delta:
            return []
        key = (output_index, content_index)
        self.text_sent[key] = self.text_sent.get(key, 0) + len(delta)
        return [delta]  # a chunk of text alone (base.StreamItem)

    def _text_done(self, output_index: int, content_index: int, text: Any) -> list[StreamItem]:
        sent = self.text_sent.get((output_index, content_index), 0)
        if isinstance(text, str) and len(text) > sent:
            return self._text(output_index, content_index, text[sent:])
        return []

    def _item_done(self, output_index: int, item: dict[str, Any]) -> list[StreamItem]:
        if item.get("type") == "function_call":
            call = self.calls.get(output_index)
            return self._arguments_done(call, item.get("arguments")) if call else self._item_added(output_index, item)
        if item.get("type") == "message":
            out: list[StreamItem] = []
            for ci, part in enumerate(item.get("content") or ()):
                if isinstance(part, dict) and part.get("type") == "output_text":
                    out += self._text_done(output_index, ci, part.get("text"))
            return out
        return []

    def _reasoning(self, at: tuple[int, int], delta: Any) -> list[StreamItem]:
        if not isinstance(delta, str) or not delta:
            return []
        # Summary parts are paragraphs of one text in chat: a blank line between them.
        sep = "\n\n" if self.reasoning_at is not None and self.reasoning_at != at else ""
        self.reasoning_at = at
        return [self._chunk({"reasoning_content": sep + delta})]

    def _finished(self, response: dict[str, Any]) -> list[StreamItem]:
        self.phase = Phase.DONE
        out: list[StreamItem] = [self._chunk({}, finish_reason(response, bool(self.calls)))]
        use = chat_usage(response.get("usage"))
        if use is not None:
            out.append(chunks.usage_chunk(self.id, self.model, self.created, use))
        return out


# The frame of a text delta as OpenAI sends it: the event line, then one data line.
_TEXT_DELTA = b"event: response.output_text.delta\ndata: "
_DATA_AT = len(_TEXT_DELTA)


class ResponsesSSEConverter:
    """Bytes of a Responses SSE stream -> chat chunks. Text deltas, most frames of an answer,
    are parsed from their data line's bytes and go straight to the text; a frame in any other
    shape (several data lines, a comment, another event) is read by the SSE rules."""

    __slots__ = ("events", "_sse")

    def __init__(self, channel: str, model: str):
        self.events = ChatFromResponses(channel, model)
        self._sse = SSEDecoder()

    def _convert(self, events: list[Any]) -> list[StreamItem]:
        out: list[StreamItem] = []
        for ev in events:
            out += self._event(ev)
        return out

    def _event(self, ev: SSEEvent) -> list[StreamItem]:
        if not ev.data or ev.data == "[DONE]":  # some servers end Responses streams chat-style
            return []
        obj = jsonfast.loads_event(ev.data)
        if not isinstance(obj, dict):
            raise ValueError("a Responses stream event is not a JSON object")
        if "type" not in obj and ev.event:  # servers that name the type on the event line only
            obj["type"] = ev.event
        return self.events.event(obj)

    def feed(self, data: bytes) -> list[StreamItem]:
        out: list[StreamItem] = []
        events = self.events
        for frame in self._sse.frames(data):
            # One data line only: JSON would take a continuation line as whitespace, where the
            # SSE rules end the data at the line break.
            if frame.startswith(_TEXT_DELTA) and events.phase is Phase.STREAMING and frame.find(b"\n", _DATA_AT) < 0:
                try:
                    obj = jsonfast.loads(frame[_DATA_AT:])
                except jsonfast.JSONDecodeError:
                    obj = None  # perhaps several data lines: the SSE rules decide
                if type(obj) is dict and obj.get("type") == "response.output_text.delta":
                    out += events.text_delta(obj)
                    continue
            if (ev := event(frame)) is not None:
                out += self._event(ev)
        return out

    def close(self) -> list[StreamItem]:
        return self._convert(self._sse.close()) + self.events.close()
