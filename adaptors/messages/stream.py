"""The chat-stream -> Anthropic Messages events state machine (sans-IO).

    machine = MessagesStream(model, stop_sequences)
    events = machine.start()                      # message_start
    events += machine.feed(chunk)                 # per stream item: a chunk, or text alone (a str)
    frame = machine.text_frame(text)              # or: text alone as its encoded SSE frame (None: feed it)
    events += machine.finish()    # or .fail(err) # last block closed, message_delta, message_stop

Blocks are numbered densely in the order they open, and exactly one is open at a time (a
block closes before the next one starts), which is what Anthropic clients rely on. Parallel
tool calls are separate blocks: the first streams live; calls that begin while it is still
open are buffered and written out, whole, when it closes, because a chat stream may still
interleave argument deltas of several calls and a closed block cannot be reopened.
`message` holds the final Message once the machine is done (the non-streaming answer).
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from ..anthropic.thinking import decode_blocks
from ..kernel import chunks, jsonfast
from ..kernel.errors import RelayError
from ..kernel.ids import new_id
from ..kernel.usage import Usage
from .errors import error_body

Event = dict[str, Any]

# chat finish_reason -> Anthropic stop_reason
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


class Phase(Enum):
    NEW = "new"
    STREAMING = "streaming"
    DONE = "done"


class _Tool:
    __slots__ = ("chat_index", "id", "name", "args", "state")

    def __init__(self, chat_index: int, tool_id: str, name: str):
        self.chat_index, self.id, self.name = chat_index, tool_id, name
        self.args: list[str] = []
        self.state = "queued"  # queued -> live -> closed

    def block(self) -> dict[str, Any]:
        raw = "".join(self.args)
        try:
            parsed = jsonfast.loads(raw) if raw.strip() else {}
        except jsonfast.JSONDecodeError:
            parsed = None
        # Anthropic's input is an object; arguments that are not one travel as they came.
        value = parsed if isinstance(parsed, dict) else {"arguments": raw}
        return {"type": "tool_use", "id": self.id, "name": self.name or "tool", "input": value, "caller": {"type": "direct"}}


_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def message_usage(chat_usage: dict[str, Any] | None) -> dict[str, int]:
    """Chat usage -> Anthropic's four counts (Usage.anthropic: input_tokens excludes cache reads and writes)."""
    full = Usage.from_chat(chat_usage or {}).anthropic()
    return {key: full[key] for key in _COUNTS}


def full_usage(short: dict[str, Any]) -> dict[str, Any]:
    """The Message's usage object with every field the schema requires."""
    return {**short, "cache_creation": None, "inference_geo": None, "output_tokens_details": None,
            "server_tool_use": None, "service_tier": None}


# A text delta event as the writer encodes it (sse.encode_event of its JSON, keys in the order
# _delta builds them): these bytes, the block index, these, the text's JSON and `}}`.
_TEXT_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_MIDDLE = b',"delta":{"type":"text_delta","text":'


class MessagesStream:
    def __init__(self, model: str, stop_sequences: list[str] | None = None, make_id: Callable[[str], str] = new_id):
        self.model = model
        self.stop_sequences = stop_sequences or []
        self.id = make_id("msg_")
        self.make_id = make_id  # injectable so golden tests can pin ids
        self.phase = Phase.NEW
        self.next_index = 0
        self.open: str | None = None  # "text" | "thinking" | "tool" while a block is open
        self.buf: list[str] = []  # the open text or thinking block's text
        self.signature = ""
        self.live: _Tool | None = None
        self.tools: dict[int, _Tool] = {}  # chat tool_call index -> tool
        self.queued: list[_Tool] = []
        self.content: list[dict[str, Any]] = []  # finished blocks, for `message`
        self.finish_reason: str | None = None
        self.matched_stop: str | None = None
        self.usage: dict[str, Any] | None = None
        self.message: dict[str, Any] | None = None

    # --- public ------------------------------------------------------------------------
    def start(self) -> list[Event]:
        self._expect(Phase.NEW, "start")
        self.phase = Phase.STREAMING
        return [{"type": "message_start", "message": self._message([], None, None, message_usage(None))}]

    def text_frame(self, text: str) -> bytes | None:
        """Text alone that continues the open text block (most items of an answer), as the
        encoded frame of the event `feed(text)` would return; None when the text would begin
        something (feed it instead). The same state changes as `feed`, no event dict built."""
        if self.open != "text" or self.phase is not Phase.STREAMING or not text:
            return None
        self.buf.append(text)
        return _TEXT_HEAD + str(self.next_index).encode() + _TEXT_MIDDLE + jsonfast.dumps(text) + b"}}\n\n"

    def feed(self, chunk: dict[str, Any] | str) -> list[Event]:
        self._expect(Phase.STREAMING, "feed")
        if isinstance(chunk, str):  # text alone (base.StreamItem)
            return self._delta("text", chunk) if chunk else []
        out: list[Event] = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one answer per Message; the bridge asks for one choice
            delta = choice.get("delta") or {}
            text = chunks.text_alone(delta)
            if text is None:
                out += self._mixed(delta)
            elif text:
                out += self._delta("text", text)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                # vLLM (stop_reason) and SGLang (matched_stop) say which stop string matched.
                matched = choice.get("stop_reason", choice.get("matched_stop"))
                if isinstance(matched, str) and matched in self.stop_sequences:
                    self.matched_stop = matched
        return out

    def _mixed(self, delta: dict[str, Any]) -> list[Event]:
        """The events of a delta with more than text in it."""
        out: list[Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out += self._delta("thinking", reasoning)
        if isinstance(delta.get("reasoning_signature"), str) and delta["reasoning_signature"]:
            out += self._signature(delta["reasoning_signature"])
        for key in ("content", "refusal"):
            if isinstance(delta.get(key), str) and delta[key]:
                out += self._delta("text", delta[key])
        for tc in delta.get("tool_calls") or ():
            out += self._tool(tc)
        return out

    def finish(self) -> list[Event]:
        self._expect(Phase.STREAMING, "finish")
        out = self._close()
        while self.queued:  # calls still waiting (for a name that never came): written out whole
            out += self._go_live(self.queued.pop(0))
            out += self._close()
        self.phase = Phase.DONE
        reason = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        stop_sequence = None
        if reason == "end_turn" and self.tools:
            reason = "tool_use"  # some servers finish tool calls with "stop"
        elif reason == "end_turn" and self.matched_stop is not None:
            reason, stop_sequence = "stop_sequence", self.matched_stop
        usage = message_usage(self.usage)
        self.message = self._message(self.content, reason, stop_sequence, usage)
        out.append({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": stop_sequence, "stop_details": None, "container": None},
                    "usage": {**usage, "output_tokens_details": None, "server_tool_use": None}})
        out.append({"type": "message_stop"})
        return out

    def fail(self, err: RelayError, request_id: str | None = None) -> list[Event]:
        """After the first byte the status line is gone: an `error` event ends the stream."""
        self._expect(Phase.STREAMING, "fail")
        self.phase = Phase.DONE
        return [error_body(err, request_id)]

    # --- blocks ------------------------------------------------------------------------
    def _expect(self, phase: Phase, action: str) -> None:
        if self.phase is not phase:
            raise RuntimeError(f"MessagesStream.{action}() called in phase {self.phase.value}")

    def _message(self, content: list[dict[str, Any]], reason: str | None, stop_sequence: str | None,
                 usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": list(content),
                "stop_reason": reason, "stop_sequence": stop_sequence, "stop_details": None, "container": None,
                "usage": full_usage(usage)}

    def _start(self, kind: str, block: dict[str, Any]) -> Event:
        self.open = kind
        return {"type": "content_block_start", "index": self.next_index, "content_block": block}

    def _stop(self, final: dict[str, Any]) -> Event:
        ev = {"type": "content_block_stop", "index": self.next_index}
        self.content.append(final)
        self.next_index += 1
        self.open = None
        return ev

    def _delta(self, kind: str, text: str) -> list[Event]:
        if self.open == kind == "text":  # within an open text block (the common case)
            self.buf.append(text)
            return [{"type": "content_block_delta", "index": self.next_index, "delta": {"type": "text_delta", "text": text}}]
        out: list[Event] = []
        if self.open != kind:
            out += self._close()
            self.buf, self.signature = [], ""
            if kind == "text":
                out.append(self._start("text", {"type": "text", "text": "", "citations": None}))
            else:
                out.append(self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
        self.buf.append(text)
        field = "text_delta" if kind == "text" else "thinking_delta"
        out.append({"type": "content_block_delta", "index": self.next_index,
                    "delta": {"type": field, "text" if kind == "text" else "thinking": text}})
        return out

    def _signature(self, token: str) -> list[Event]:
        """Thinking blocks an Anthropic-backed adaptor carried through chat (see thinking.py)."""
        out: list[Event] = []
        for block in decode_blocks(token):
            if block["type"] == "thinking" and self.open == "thinking" and not self.signature:
                self.signature = str(block.get("signature") or "")
                out.append({"type": "content_block_delta", "index": self.next_index,
                            "delta": {"type": "signature_delta", "signature": self.signature}})
                continue
            out += self._close()
            if block["type"] == "thinking":
                out += self._delta("thinking", str(block.get("thinking") or ""))
                out += self._signature_only(str(block.get("signature") or ""))
            else:
                data = {"type": "redacted_thinking", "data": str(block.get("data") or "")}
                out.append(self._start("redacted", data))
                out.append(self._stop(data))
        return out

    def _signature_only(self, signature: str) -> list[Event]:
        self.signature = signature
        return [{"type": "content_block_delta", "index": self.next_index,
                 "delta": {"type": "signature_delta", "signature": signature}}]

    def _tool(self, tc: dict[str, Any]) -> list[Event]:
        idx = tc.get("index", 0)
        fn = tc.get("function") or {}
        out: list[Event] = []
        tool = self.tools.get(idx)
        if tool is None:
            tool = _Tool(idx, tc.get("id") or self.make_id("toolu_"), fn.get("name") or "")
            self.tools[idx] = tool
            self.queued.append(tool)
        elif fn.get("name") and not tool.name:
            tool.name = fn["name"]  # servers that send the name after the id
        if self.live is None and self.queued and self.queued[0].name:
            # The next call goes live once its name is known (content_block_start needs it).
            out += self._close()
            out += self._go_live(self.queued.pop(0))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            if tool.state == "closed":
                raise ValueError(f"arguments for tool call {idx} arrived after its block was closed")
            tool.args.append(args)
            if tool.state == "live":
                out.append(self._args(args))
        return out

    def _go_live(self, tool: _Tool) -> list[Event]:
        tool.state = "live"
        self.live = tool
        start = {"type": "tool_use", "id": tool.id, "name": tool.name or "tool", "input": {}, "caller": {"type": "direct"}}
        out = [self._start("tool", start)]
        if tool.args:
            out.append(self._args("".join(tool.args)))
        return out

    def _args(self, partial: str) -> Event:
        return {"type": "content_block_delta", "index": self.next_index, "delta": {"type": "input_json_delta", "partial_json": partial}}

    def _close(self) -> list[Event]:
        """Closes the open block; after a tool block, writes out the buffered tool calls."""
        if self.open is None:
            return []
        if self.open == "text":
            return [self._stop({"type": "text", "text": "".join(self.buf), "citations": None})]
        if self.open == "thinking":
            return [self._stop({"type": "thinking", "thinking": "".join(self.buf), "signature": self.signature})]
        out: list[Event] = []
        while self.live is not None:
            tool, self.live = self.live, None
            tool.state = "closed"
            out.append(self._stop(tool.block()))
            if self.queued:
                out += self._go_live(self.queued.pop(0))
        return out
