"""Chat <-> the Echo protocol, pure: no I/O, no aiohttp, so every rule is unit-testable.

The Echo protocol (invented for this example; nothing like OpenAI's on the wire):

    POST /speak        {"voice": str, "script": [{"who": "director"|"human"|"echo", "line": str}],
                        "max_words": int}
                   ->  {"said": str, "heard": int, "spoken": int, "ending": "done"|"out_of_words"}
    POST /speak/live   same body -> newline-delimited JSON, one object per line:
                       {"say": str} ... then {"done": {"heard": int, "spoken": int, "ending": ...}}
                       or, when it fails half-way, {"trouble": str}
    errors             any status >= 400 with {"trouble": str, "retry_in": seconds (optional)}

Words count as tokens (`heard` -> prompt_tokens, `spoken` -> completion_tokens).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.base import StreamItem
from relay_adaptors.kernel.errors import RelayError, bad_request, upstream_auth, upstream_bad_response

WHO = {"system": "director", "developer": "director", "user": "human", "assistant": "echo"}
ENDING = {"done": "stop", "out_of_words": "length"}
# Chat parameters Echo has no notion of: left out, and named in x-relay-ignored-params.
IGNORED = ("temperature", "top_p", "seed", "stop", "frequency_penalty", "presence_penalty", "logit_bias",
           "reasoning_effort", "metadata", "user", "store", "service_tier", "parallel_tool_calls")


@dataclass
class Script:
    body: dict[str, Any]
    ignored: list[str] = field(default_factory=list)


def _line(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content or ()):
        if part.get("type") != "text":
            where = f"{param}[{j}]"
            raise bad_request(f"echo channels take text only; '{where}' is {part.get('type')!r}.", param=where)
        texts.append(part["text"])
    return "\n".join(texts)


def to_script(request: dict[str, Any], voice: str, default_words: int) -> Script:
    """A validated chat request -> an Echo request body. What Echo cannot do is a 400
    naming the parameter, never a silently different answer."""
    for param in ("tools", "functions"):
        if request.get(param):
            raise bad_request("echo channels cannot call client-defined tools.", param=param)
    if (request.get("n") or 1) > 1:
        raise bad_request("echo channels return one choice; 'n' must be 1.", param="n")
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") != "text":
        raise bad_request("echo channels cannot enforce a response_format.", param="response_format")
    script = []
    for i, msg in enumerate(request["messages"]):
        who = WHO.get(msg["role"])
        if who is None:
            raise bad_request(f"echo channels cannot take {msg['role']!r} messages.", param=f"messages[{i}].role")
        if msg.get("tool_calls"):
            raise bad_request("echo channels cannot replay tool calls.", param=f"messages[{i}].tool_calls")
        script.append({"who": who, "line": _line(msg.get("content"), f"messages[{i}].content")})
    words = request.get("max_completion_tokens") or request.get("max_tokens") or default_words
    return Script({"voice": voice, "script": script, "max_words": words}, [p for p in IGNORED if p in request])


def to_completion(channel: str, body: bytes, model: str) -> dict[str, Any]:
    try:
        answer = json.loads(body)
        if not isinstance(answer, dict) or not isinstance(answer.get("said"), str):
            raise ValueError("no 'said'")
        heard, spoken = _counts(answer)
    except ValueError:
        raise upstream_bad_response(channel, "the body is not an Echo answer") from None
    return chunks.completion(
        chunks.completion_id(), model, chunks.now(), {"role": "assistant", "content": answer["said"]},
        _finish_reason(answer), chunks.usage(heard, spoken),
    )


def _counts(obj: Any) -> tuple[int, int]:
    """(heard, spoken) of an answer or a done line; ValueError when they are not counts."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), int) for k in ("heard", "spoken")):
        raise ValueError("word counts are missing")
    return obj["heard"], obj["spoken"]


def _finish_reason(obj: dict[str, Any]) -> str:
    ending = obj.get("ending", "done")
    if ending not in ENDING:
        raise ValueError(f"unknown ending {ending!r}")
    return ENDING[ending]


def to_error(channel: str, status: int, body: bytes) -> RelayError:
    """An Echo error answer -> the error a client of Relay sees. 429 and 5xx let Relay fail
    over to the next channel; Echo's `retry_in` becomes retry-after, which the breaker honours."""
    if status in (401, 403):
        return upstream_auth(channel)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    trouble = parsed.get("trouble") if isinstance(parsed, dict) else None
    retry_in = parsed.get("retry_in") if isinstance(parsed, dict) else None
    headers = {"retry-after": str(retry_in)} if isinstance(retry_in, int | float) else {}
    detail = trouble if isinstance(trouble, str) else f"HTTP {status}"
    if status == 429:
        return RelayError(429, f"upstream channel {channel!r} is busy: {detail}", type="rate_limit_error",
                          code="rate_limit_exceeded", headers=headers)
    if status >= 500:
        return RelayError(502, f"upstream channel {channel!r} failed: {detail}", type="api_error",
                          code="upstream_error", headers=headers)
    return RelayError(status, f"upstream channel {channel!r} refused the request: {detail}")


class LiveConverter:
    """Echo's newline-delimited JSON stream -> chat chunks. Bytes may arrive cut anywhere:
    a line is read only once its newline is in."""

    def __init__(self, channel: str, model: str):
        self.channel = channel
        self.model = model
        self.id = chunks.completion_id()
        self.created = chunks.now()
        self._buf = b""
        self._started = False
        self._over = False  # a done or trouble line was read

    def feed(self, data: bytes) -> list[StreamItem]:
        *lines, self._buf = (self._buf + data).split(b"\n")
        out: list[StreamItem] = []
        for line in lines:
            if line.strip() and not self._over:
                out += self._event(line)
        return out

    def close(self) -> list[StreamItem]:
        out = self.feed(b"\n") if self._buf else []
        if not self._over:
            raise ValueError("the stream ended before its done line")
        return out

    def _event(self, line: bytes) -> list[StreamItem]:
        try:
            ev = json.loads(line)
        except ValueError:
            raise ValueError("a stream line is not JSON") from None
        if not isinstance(ev, dict):
            raise ValueError("a stream line is not a JSON object")
        if "trouble" in ev:
            self._over = True
            return [RelayError(502, f"upstream channel {self.channel!r} failed mid-stream: {ev['trouble']}",
                               type="api_error", code="upstream_error")]
        out: list[StreamItem] = []
        if not self._started:  # the first chunk carries the role, as OpenAI's do
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if "say" in ev:
            out.append(self._chunk({"content": str(ev["say"])}))
        elif "done" in ev:
            heard, spoken = _counts(ev["done"])
            out.append(self._chunk({}, _finish_reason(ev["done"])))
            self._over = True
            out.append(chunks.usage_chunk(self.id, self.model, self.created, chunks.usage(heard, spoken)))
        else:
            raise ValueError(f"unknown stream line with keys {sorted(ev)}")
        return out

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return chunks.chunk(self.id, self.model, self.created, delta, finish_reason)
