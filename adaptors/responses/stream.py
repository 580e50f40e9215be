"""The chat-stream -> Responses-events state machine (sans-IO).

Fed canonical chat chunks, it returns Responses stream events, ready to encode:

    machine = ResponsesStream(envelope, names)
    events = machine.start()                     # response.created, response.in_progress
    events += machine.feed(chunk)                # per stream item: a chunk, or text alone (a str)
    frame = machine.text_frame(text)             # or: text alone as its encoded SSE frame (None: feed it)
    events += machine.finish()   # or .fail(err) # close open items + exactly one terminal event

Output items are numbered densely in the order they are added. Text and reasoning items are
closed as soon as something else begins; tool call items stay open until the end because
parallel calls interleave their argument deltas.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from ..kernel import chunks, jsonfast
from ..kernel.errors import RelayError
from ..kernel.ids import new_id
from ..kernel.usage import Usage
from .envelope import Envelope
from .tools import ToolNames

Event = dict[str, Any]

# An output_text delta event as the writer encodes it (sse.encode_event of its JSON, keys in
# the order _text_delta builds them): these bytes, the sequence number, the part's ids, the
# delta's JSON, and the end.
_DELTA_START = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
_DELTA_END = b',"logprobs":[]}\n\n'


class Phase(Enum):
    NEW = "new"
    STREAMING = "streaming"
    DONE = "done"


class _Message:
    kind = "message"

    def __init__(self, index: int, item_id: str):
        self.index, self.id = index, item_id
        self.parts: list[dict[str, Any]] = []  # finished content parts
        self.part_type: str | None = None  # "output_text" | "refusal" while a part is open
        self.buf: list[str] = []
        self.delta_head: bytes | None = None  # an output_text delta frame's bytes from after its sequence number to its delta

    def item(self, status: str) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "status": status, "content": list(self.parts)}


class _Reasoning:
    kind = "reasoning"

    def __init__(self, index: int, item_id: str):
        self.index, self.id = index, item_id
        self.buf: list[str] = []
        self.part_open = False
        self.encrypted: str | None = None

    def item(self, status: str) -> dict[str, Any]:
        summary = [{"type": "summary_text", "text": "".join(self.buf)}] if self.part_open else []
        out: dict[str, Any] = {"id": self.id, "type": "reasoning", "summary": summary, "status": status}
        if self.encrypted is not None:
            out["encrypted_content"] = self.encrypted
        return out


class _FunctionCall:
    kind = "function_call"

    def __init__(self, index: int, item_id: str, call_id: str, flat_name: str, names: ToolNames):
        self.index, self.id, self.call_id = index, item_id, call_id
        self.namespace, self.name = names.original(flat_name)
        self.args: list[str] = []

    def item(self, status: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": "function_call", "status": status, "call_id": self.call_id,
                               "name": self.name, "arguments": "".join(self.args)}
        if self.namespace:
            out["namespace"] = self.namespace
        return out


_Item = _Message | _Reasoning | _FunctionCall


# chat finish_reason -> the Response's incomplete_details.reason (any other finish completes it)
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def failure_code(err: RelayError) -> str:
    """ResponseError.code is a closed set; the specific reason stays in the message."""
    if err.status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= err.status < 500 else "server_error"


class ResponsesStream:
    def __init__(self, envelope: Envelope, names: ToolNames, make_id: Callable[[str], str] = new_id):
        self.envelope = envelope
        self.make_id = make_id  # injectable so golden tests can pin ids
        self.names = names
        self.phase = Phase.NEW
        self.seq = 0
        self.items: list[_Item] = []
        self.done: dict[int, dict[str, Any]] = {}  # output_index -> final item
        self.text: _Message | None = None
        self.reasoning: _Reasoning | None = None
        self.calls: dict[int, _FunctionCall] = {}  # chat tool_call index -> item
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.response: dict[str, Any] | None = None  # the final Response, once DONE

    # --- public ------------------------------------------------------------------------
    def start(self) -> list[Event]:
        self._expect(Phase.NEW, "start")
        self.phase = Phase.STREAMING
        snap = self.envelope.snapshot("in_progress", [])
        return [self._ev("response.created", response=snap), self._ev("response.in_progress", response=snap)]

    def feed(self, chunk: dict[str, Any] | str) -> list[Event]:
        self._expect(Phase.STREAMING, "feed")
        if isinstance(chunk, str):  # text alone (base.StreamItem)
            return self._text_delta("output_text", chunk) if chunk else []
        out: list[Event] = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 has no Responses equivalent; the bridge asks for one choice
            delta = choice.get("delta") or {}
            text = chunks.text_alone(delta)
            if text is None:
                out += self._mixed(delta)
            elif text:
                out += self._text_delta("output_text", text)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def text_frame(self, text: str) -> bytes | None:
        """Text alone that continues the open text part (most items of an answer), as the
        encoded frame of the event `feed(text)` would return; None when the text would begin
        something (feed it instead). The same state changes as `feed`, no event dict built."""
        m = self.text  # set only while streaming: finish() and fail() close it
        if m is None or m.part_type != "output_text" or self.reasoning is not None or not text:
            return None
        m.buf.append(text)
        self.seq += 1
        head = m.delta_head
        if head is None:
            head = m.delta_head = (b',"item_id":' + jsonfast.dumps(m.id) + b',"output_index":' + str(m.index).encode()
                                   + b',"content_index":' + str(len(m.parts)).encode() + b',"delta":')
        return _DELTA_START + str(self.seq - 1).encode() + head + jsonfast.dumps(text) + _DELTA_END

    def _mixed(self, delta: dict[str, Any]) -> list[Event]:
        """The events of a delta with more than text in it."""
        out: list[Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out += self._reasoning_delta(reasoning)
        if delta.get("reasoning_signature"):
            out += self._ensure_reasoning()
            assert self.reasoning is not None
            self.reasoning.encrypted = (self.reasoning.encrypted or "") + delta["reasoning_signature"]
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text_delta("output_text", delta["content"])
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            out += self._text_delta("refusal", delta["refusal"])
        for tc in delta.get("tool_calls") or ():
            out += self._tool_delta(tc)
        return out

    def finish(self) -> list[Event]:
        self._expect(Phase.STREAMING, "finish")
        incomplete = INCOMPLETE_REASONS.get(self.finish_reason or "")
        out = self._close_all("incomplete" if incomplete else "completed")
        status = "incomplete" if incomplete else "completed"
        self.response = self.envelope.snapshot(status, self._output(), self._usage(), incomplete_reason=incomplete)
        self.phase = Phase.DONE
        out.append(self._ev(f"response.{status}", response=self.response))
        return out

    def fail(self, err: RelayError) -> list[Event]:
        self._expect(Phase.STREAMING, "fail")
        out = self._close_all("incomplete")
        error = {"code": failure_code(err), "message": err.message}
        self.response = self.envelope.snapshot("failed", self._output(), self._usage(), error=error)
        self.phase = Phase.DONE
        out.append(self._ev("response.failed", response=self.response))
        return out

    # --- items -------------------------------------------------------------------------
    def _usage(self) -> dict[str, Any] | None:
        return Usage.from_chat(self.usage).responses() if self.usage else None  # absent until known

    def _ev(self, type_: str, **fields: Any) -> Event:
        ev = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return ev

    def _expect(self, phase: Phase, action: str) -> None:
        if self.phase is not phase:
            raise RuntimeError(f"ResponsesStream.{action}() called in phase {self.phase.value}")

    def _output(self) -> list[dict[str, Any]]:
        return [self.done[i] for i in sorted(self.done)]

    def _add(self, item: _Item) -> Event:
        self.items.append(item)
        return self._ev("response.output_item.added", output_index=item.index, item=item.item("in_progress"))

    def _ensure_reasoning(self) -> list[Event]:
        if self.reasoning is not None:
            return []
        out = self._close_text()
        self.reasoning = _Reasoning(len(self.items), self.make_id("rs_"))
        out.append(self._add(self.reasoning))
        return out

    def _reasoning_delta(self, text: str) -> list[Event]:
        out = self._ensure_reasoning()
        r = self.reasoning
        assert r is not None
        if not r.part_open:
            out.append(self._ev("response.reasoning_summary_part.added", item_id=r.id, output_index=r.index,
                                summary_index=0, part={"type": "summary_text", "text": ""}))
            r.part_open = True
        r.buf.append(text)
        out.append(self._ev("response.reasoning_summary_text.delta", item_id=r.id, output_index=r.index, summary_index=0, delta=text))
        return out

    def _text_delta(self, part_type: str, text: str) -> list[Event]:
        m = self.text
        if m is not None and m.part_type == part_type == "output_text" and self.reasoning is None:
            # Within an open text part (the common case): the event the general path builds.
            m.buf.append(text)
            self.seq += 1
            return [{"type": "response.output_text.delta", "sequence_number": self.seq - 1, "item_id": m.id,
                     "output_index": m.index, "content_index": len(m.parts), "delta": text, "logprobs": []}]
        out = self._close_reasoning()
        if self.text is None:
            self.text = _Message(len(self.items), self.make_id("msg_"))
            out.append(self._add(self.text))
        m = self.text
        if m.part_type != part_type:
            out += self._close_part(m)
            m.part_type = part_type
            out.append(self._ev("response.content_part.added", item_id=m.id, output_index=m.index,
                                content_index=len(m.parts), part=_part(part_type, "")))
        m.buf.append(text)
        kind = "output_text" if part_type == "output_text" else "refusal"
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        out.append(self._ev(f"response.{kind}.delta", item_id=m.id, output_index=m.index, content_index=len(m.parts), delta=text, **extra))
        return out

    def _tool_delta(self, tc: dict[str, Any]) -> list[Event]:
        idx = tc.get("index", 0)
        fn = tc.get("function") or {}
        out: list[Event] = []
        call = self.calls.get(idx)
        if call is None:
            out += self._close_text() + self._close_reasoning()
            call_id = tc.get("id") or self.make_id("call_")
            call = _FunctionCall(len(self.items), self.make_id("fc_"), call_id, fn.get("name") or "", self.names)
            self.calls[idx] = call
            out.append(self._add(call))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            call.args.append(args)
            out.append(self._ev("response.function_call_arguments.delta", item_id=call.id, output_index=call.index, delta=args))
        return out

    # --- closing -----------------------------------------------------------------------
    def _close_part(self, m: _Message) -> list[Event]:
        if m.part_type is None:
            return []
        text, kind, ci = "".join(m.buf), m.part_type, len(m.parts)
        done = _part(kind, text)
        if kind == "output_text":
            ev = self._ev("response.output_text.done", item_id=m.id, output_index=m.index, content_index=ci, text=text, logprobs=[])
        else:
            ev = self._ev("response.refusal.done", item_id=m.id, output_index=m.index, content_index=ci, refusal=text)
        m.parts.append(done)
        m.part_type, m.buf, m.delta_head = None, [], None
        return [ev, self._ev("response.content_part.done", item_id=m.id, output_index=m.index, content_index=ci, part=done)]

    def _close_text(self, status: str = "completed") -> list[Event]:
        m, self.text = self.text, None
        if m is None:
            return []
        out = self._close_part(m)
        return out + [self._item_done(m, m.item(status))]

    def _close_reasoning(self, status: str = "completed") -> list[Event]:
        r, self.reasoning = self.reasoning, None
        if r is None:
            return []
        out: list[Event] = []
        if r.part_open:
            text = "".join(r.buf)
            part = {"type": "summary_text", "text": text}
            out.append(self._ev("response.reasoning_summary_text.done", item_id=r.id, output_index=r.index, summary_index=0, text=text))
            out.append(self._ev("response.reasoning_summary_part.done", item_id=r.id, output_index=r.index, summary_index=0, part=part))
        return out + [self._item_done(r, r.item(status))]

    def _close_call(self, call: _FunctionCall, status: str) -> list[Event]:
        args = "".join(call.args)
        return [
            self._ev("response.function_call_arguments.done", item_id=call.id, output_index=call.index, name=call.name, arguments=args),
            self._item_done(call, call.item(status)),
        ]

    def _item_done(self, item: _Item, final: dict[str, Any]) -> Event:
        self.done[item.index] = final
        return self._ev("response.output_item.done", output_index=item.index, item=final)

    def _close_all(self, status: str) -> list[Event]:
        """Closes whatever is open, in output order."""
        out: list[Event] = []
        open_items = [i for i in self.items if i.index not in self.done]
        for item in open_items:
            if item is self.text:
                out += self._close_text(status)
            elif item is self.reasoning:
                out += self._close_reasoning(status)
            elif isinstance(item, _FunctionCall):
                out += self._close_call(item, status)
        return out


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "refusal", "refusal": text}
