"""Pure conversions for OpenAI-compatible upstreams: almost nothing to convert, by design."""
from __future__ import annotations

from typing import Any

from ..kernel import chunks, jsonfast
from ..kernel.base import StreamItem
from ..kernel.errors import RelayError, upstream_auth, upstream_bad_response, upstream_json_object
from ..kernel.sse import DataDecoder


def upstream_body(request: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
    """The client's request with the model renamed; unknown fields are kept as they are.
    Streams always ask for the usage chunk so Relay can account; the relay drops it again
    for clients that did not ask for it."""
    body = dict(request)
    body["model"] = upstream_model
    if stream:
        body["stream"] = True
        opts = body.get("stream_options")
        body["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return jsonfast.dumps(body)


def parse_completion(channel: str, body: bytes) -> dict[str, Any]:
    return upstream_json_object(channel, body, "choices", "a chat completion")


def error_from_body(channel: str, status: int, headers: dict[str, str], body: bytes) -> RelayError:
    if status in (401, 403):
        return upstream_auth(channel)
    err: dict[str, Any] = {}
    try:
        parsed = jsonfast.loads(body) if body else None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
        elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            err = {"message": parsed["error"]}
    except jsonfast.JSONDecodeError:
        pass
    message = err.get("message") if isinstance(err.get("message"), str) else None
    keep = {k: v for k, v in headers.items() if k.lower() == "retry-after"}
    return RelayError(
        status,
        message or f"upstream channel {channel!r} answered HTTP {status}",
        type=str(err.get("type") or ("invalid_request_error" if status < 500 else "api_error")),
        code=str(err["code"]) if err.get("code") is not None else None,
        param=str(err["param"]) if err.get("param") is not None else None,
        headers=keep,
    )


class ChatStreamConverter:
    """Upstream chat SSE -> chat chunk dicts. An `error` frame becomes a RelayError item.

    `for_bridge`: the stream feeds the Responses or Messages bridge, which reads its chunks'
    fields as the chat API types them: every chunk is checked for that (`checked_chunk`), and
    a chunk of text alone that continues the chunk before it (same id, model and created, one
    choice 0 with no finish, logprobs or usage) becomes a str item (base.StreamItem), which
    does not carry the fields no bridge reads (system_fingerprint, obfuscation). Without it
    (the chat tap's reading, for chat clients) every chunk goes on whole, as the upstream's
    own bytes do on the tap's fast path; only a payload that is not an object is refused."""

    __slots__ = ("channel", "_sse", "done", "_for_bridge", "_last")

    def __init__(self, channel: str, for_bridge: bool = False):
        self.channel = channel
        self._sse = DataDecoder()  # chat streams carry everything in `data`
        self.done = False
        self._for_bridge = for_bridge
        self._last: dict[str, Any] | None = None  # the chunk a str item takes its id, model and created from

    def feed(self, data: bytes) -> list[StreamItem]:
        return self._convert(self._sse.feed(data))

    def close(self) -> list[StreamItem]:
        items = self._convert(self._sse.close())
        if not self.done and not any(isinstance(i, RelayError) for i in items):
            items.append(upstream_bad_response(self.channel, "the stream ended before [DONE]"))
        return items

    def _convert(self, payloads: list[bytes]) -> list[StreamItem]:
        out: list[StreamItem] = []
        last = self._last
        for data in payloads:
            if data == b"[DONE]":
                self.done = True
                continue
            if not data:
                continue
            obj = jsonfast.loads_event(data)
            if type(obj) is dict and "error" in obj:
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
                out.append(RelayError(502, str(err.get("message") or "upstream stream error"), type=str(err.get("type") or "api_error"), code=err.get("code") if isinstance(err.get("code"), str) else "upstream_error"))
                self.done = True
                continue
            if not self._for_bridge:
                if type(obj) is not dict:
                    raise ValueError("a chat stream event is not a JSON object")
                out.append(obj)
                continue
            item = read_chunk(obj, last)
            if type(item) is dict:
                out.append(item)
                last = item
            elif item:
                out.append(item)
        self._last = last
        return out


def read_chunk(obj: Any, last: dict[str, Any] | None) -> dict[str, Any] | str:
    """A parsed upstream chunk as a stream item: the text, for text alone continuing `last`
    (checked in one pass: most chunks of an answer), else the chunk, checked."""
    if last is None or type(obj) is not dict:
        return checked_chunk(obj)
    choices = obj.get("choices")
    if type(choices) is list and len(choices) == 1 and type(choice := choices[0]) is dict:
        delta = choice.get("delta")
        if type(delta) is dict and len(delta) == 1 and type(text := delta.get("content")) is str \
                and choice.get("finish_reason") is None and choice.get("logprobs") is None \
                and type(index := choice.get("index", 0)) is int and index == 0 \
                and obj.get("usage") is None and obj.get("id") == last.get("id") \
                and obj.get("model") == last.get("model") and obj.get("created") == last.get("created"):
            return text
    return checked_chunk(obj)


# The delta fields readers take as text; each is a string or absent/null in the chat API.
# `content` may also be a list of parts (Mistral streams thinking and references so): the
# bridges carry only text content and skip the rest, as they did before these checks.
_DELTA_TEXTS = ("role", "refusal", "reasoning_content", "reasoning", "reasoning_signature")


def checked_chunk(obj: Any) -> dict[str, Any]:
    """An upstream chat chunk, once every field a reader of it takes has the type the chat API
    gives it (a ValueError, answered as a 502, if not): an upstream's chunk is untrusted, and
    the bridges and writers after this point read it as a chat chunk."""
    if type(obj) is not dict:
        raise ValueError("a chat stream event is not a JSON object")
    if not (_is(obj.get("id"), str) and _is(obj.get("usage"), dict)):
        raise ValueError("a chat chunk's id or usage has the wrong type")
    choices = obj.get("choices")
    if choices is None:
        return obj
    if type(choices) is not list:
        raise ValueError("a chat chunk's choices is not a list")
    for choice in choices:
        if type(choice) is not dict or not (_is(choice.get("index"), int) and _is(choice.get("finish_reason"), str)):
            raise ValueError("a chat chunk's choice is not an object with an integer index")
        delta = choice.get("delta")
        if delta is None:
            continue
        if type(delta) is not dict:
            raise ValueError("a chat chunk's delta is not an object")
        if chunks.text_alone(delta) is not None:
            continue
        content = delta.get("content")
        if not (all(_is(delta.get(k), str) for k in _DELTA_TEXTS) and (_is(content, str) or type(content) is list)):
            raise ValueError("a chat chunk's delta is not an object of texts")
        calls = delta.get("tool_calls")
        if calls is not None and not (type(calls) is list and all(_tool_call(c) for c in calls)):
            raise ValueError("a chat chunk's tool_calls are not tool call deltas")
    return obj


def _is(value: Any, kind: type) -> bool:
    """`value` is absent/null or exactly of `kind` (a bool is no integer here)."""
    return value is None or type(value) is kind


def _tool_call(call: Any) -> bool:
    if type(call) is not dict or not (_is(call.get("index"), int) and _is(call.get("id"), str) and _is(call.get("type"), str)):
        return False
    fn = call.get("function")
    return fn is None or (type(fn) is dict and _is(fn.get("name"), str) and _is(fn.get("arguments"), str))
