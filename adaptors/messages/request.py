"""Anthropic Messages request -> canonical chat request (pure).

What a chat upstream cannot honour is a 400 naming its `param`, except, by policy, server
tools (Anthropic runs them itself): dropped and reported (x-relay-dropped-tools), or refused
under `responses.unsupported_tools: reject`. Parameters with no chat equivalent that do not
change the answer's shape (`top_k`, `context_management`, ...) are named in `ignored`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..anthropic.thinking import encode_block
from ..kernel import jsonfast
from ..kernel.errors import bad_request
from ..kernel.params import add_shown, shown

# Fields a chat upstream has no equivalent for; left out and named in x-relay-ignored-params.
IGNORED = ("top_k", "context_management", "service_tier", "container", "mcp_servers", "inference_geo")
# thinking.budget_tokens -> reasoning_effort (upper bounds).
_BUDGET_EFFORT = ((4096, "low"), (16384, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


@dataclass
class MessagesConversion:
    chat: dict[str, Any]
    stream: bool
    stop_sequences: list[str] = field(default_factory=list)
    dropped_tools: list[str] = field(default_factory=list)  # names of server tools left out
    ignored: list[str] = field(default_factory=list)


def _need(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise bad_request(message, param=param)


def validate_request(body: Any, need_max_tokens: bool = True) -> dict[str, Any]:
    """The fields every channel needs, checked before routing (the passthrough forwards the
    rest untouched, so only what Relay itself reads is checked here). Token counting takes
    no max_tokens."""
    _need(isinstance(body, dict), "The request body must be a JSON object.", "body")
    _need(isinstance(body.get("model"), str) and body["model"] != "", "model: Field required", "model")
    max_tokens = body.get("max_tokens")
    _need(not need_max_tokens or (isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1),
          "max_tokens: Field required (an integer >= 1)", "max_tokens")
    msgs = body.get("messages")
    _need(isinstance(msgs, list) and len(msgs) > 0, "messages: Field required (a non-empty array)", "messages")
    for i, m in enumerate(msgs):
        _need(isinstance(m, dict) and m.get("role") in ("user", "assistant", "system"),
              f"messages.{i}.role: Input should be 'user' or 'assistant'", f"messages.{i}.role")
        _need(isinstance(m.get("content"), (str, list)), f"messages.{i}.content: Field required", f"messages.{i}.content")
    checked: dict[str, Any] = body
    return checked


def _text_of(blocks: Any, param: str) -> str:
    """A system prompt (string or text blocks) as one string."""
    if isinstance(blocks, str):
        return blocks
    _need(isinstance(blocks, list), f"{param}: Input should be a string or an array of text blocks", param)
    parts = []
    for j, b in enumerate(blocks):
        _need(isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str),
              f"{param}.{j}: system blocks must be text blocks", f"{param}.{j}")
        parts.append(b["text"])
    return "\n\n".join(parts)


def _source_url(src: dict[str, Any], param: str) -> str:
    kind = src.get("type")
    if kind == "base64":
        _need(isinstance(src.get("media_type"), str) and isinstance(src.get("data"), str),
              f"{param}.source: base64 sources need media_type and data", f"{param}.source")
        return f"data:{src['media_type']};base64,{src['data']}"
    if kind == "url":
        _need(isinstance(src.get("url"), str), f"{param}.source.url: Field required", f"{param}.source.url")
        return str(src["url"])
    raise bad_request(f"{param}.source.type: {kind!r} sources cannot be sent to this model's channel", param=f"{param}.source.type")


def _part(block: dict[str, Any], param: str) -> dict[str, Any] | None:
    """One user-side content block -> a chat content part (None: nothing to send)."""
    kind = block.get("type")
    if kind == "text":
        _need(isinstance(block.get("text"), str), f"{param}.text: Field required", f"{param}.text")
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block.get("source") or {}, param)}}
    if kind == "document":
        src = block.get("source") or {}
        if src.get("type") == "text":
            return {"type": "text", "text": str(src.get("data") or "")}
        if src.get("type") == "content":
            return {"type": "text", "text": _text_of(src.get("content"), f"{param}.source.content")}
        url = _source_url(src, param)
        file: dict[str, Any] = {"file_data": url} if src.get("type") == "base64" else {"file_url": url}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    if kind in ("thinking", "redacted_thinking"):
        return None
    raise bad_request(f"{param}.type: content blocks of type {kind!r} cannot be sent to this model's channel",
                      param=f"{param}.type")


def _plain(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only parts collapse to a string: every chat upstream takes that."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_result(block: dict[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the tool message, image parts that chat only takes in a user message)."""
    _need(isinstance(block.get("tool_use_id"), str), f"{param}.tool_use_id: Field required", f"{param}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for j, b in enumerate(content):
            if not isinstance(b, dict):
                continue
            if b.get("type") not in ("text", "image", "document"):
                texts.append(jsonfast.dumps(b).decode())  # e.g. a tool_reference: kept, as the model can read it
                continue
            part = _part(b, f"{param}.content.{j}")
            if part is not None:
                (texts.append(part["text"]) if part["type"] == "text" else images.append(part))
    text = "".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"  # chat has no error flag on tool results
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, images


class _Builder:
    def __init__(self, keep_reasoning: bool):
        self.out: list[dict[str, Any]] = []
        self.keep_reasoning = keep_reasoning

    def user(self, content: Any, param: str) -> None:
        if isinstance(content, str):
            self.out.append({"role": "user", "content": content})
            return
        parts: list[dict[str, Any]] = []
        for j, b in enumerate(content):
            p = f"{param}.{j}"
            _need(isinstance(b, dict), f"{p}: Input should be an object", p)
            if b.get("type") == "tool_result":
                # Tool results answer the previous assistant turn, so they come first.
                msg, images = _tool_result(b, p)
                self.out.append(msg)
                parts += images
                continue
            part = _part(b, p)
            if part is not None:
                parts.append(part)
        if parts:
            self.out.append({"role": "user", "content": _plain(parts)})

    def assistant(self, content: Any, param: str) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(content, str):
            msg["content"] = content
            self.out.append(msg)
            return
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        tokens: list[str] = []
        for j, b in enumerate(content):
            p = f"{param}.{j}"
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "text":
                texts.append(str(b.get("text") or ""))
            elif kind == "tool_use":
                _need(isinstance(b.get("id"), str) and isinstance(b.get("name"), str), f"{p}: tool_use needs id and name", p)
                calls.append({"id": b["id"], "type": "function",
                              "function": {"name": b["name"], "arguments": jsonfast.dumps(b.get("input") or {}).decode()}})
            elif kind == "thinking" and self.keep_reasoning:
                tokens.append(encode_block({"type": "thinking", "thinking": b.get("thinking", ""), "signature": b.get("signature", "")}))
            elif kind == "redacted_thinking" and self.keep_reasoning:
                tokens.append(encode_block({"type": "redacted_thinking", "data": b.get("data", "")}))
            elif kind in ("thinking", "redacted_thinking"):
                continue  # earlier reasoning is only meaningful to the model that wrote it
            elif isinstance(kind, str) and (kind.startswith("server_tool") or kind.endswith("_tool_result")):
                continue  # a server tool's call and result, run by Anthropic: nothing a chat model can replay
            else:
                raise bad_request(f"{p}.type: content blocks of type {kind!r} cannot be sent to this model's channel", param=f"{p}.type")
        if texts:
            msg["content"] = "".join(texts)
        if calls:
            msg["tool_calls"] = calls
        if tokens:
            msg["reasoning_signature"] = "".join(tokens)
        if texts or calls or tokens:
            self.out.append(msg)

    def system(self, content: Any, param: str) -> None:
        # The mid-conversation system beta: a system message in place, never a user one.
        self.out.append({"role": "system", "content": _text_of(content, param)})


def _tools(tools: Any, reject: bool) -> tuple[list[dict[str, Any]], list[str]]:
    if tools is None:
        return [], []
    _need(isinstance(tools, list), "tools: Input should be an array", "tools")
    out: list[dict[str, Any]] = []
    dropped: list[str] = []
    for i, t in enumerate(tools):
        p = f"tools.{i}"
        _need(isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] != "", f"{p}.name: Field required", f"{p}.name")
        if t.get("type") not in (None, "custom") or "input_schema" not in t:
            # A server tool (web_search_..., bash_20250124, ...): only Anthropic can run it.
            if reject:
                raise bad_request(f"{p}: the server tool '{shown(t['name'])}' ({shown(str(t.get('type')))}) cannot run on this model's channel; "
                                  "remove it or ask the operator to set responses.unsupported_tools: drop.", param=p)
            add_shown(dropped, t["name"])  # reflected in x-relay-dropped-tools and the log: bounded, sanitised
            continue
        fn: dict[str, Any] = {"name": t["name"], "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}
        if isinstance(t.get("description"), str) and t["description"]:
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out, dropped


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """(chat tool_choice, parallel_tool_calls)."""
    _need(isinstance(choice, dict), "tool_choice: Input should be an object", "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        _need(isinstance(choice.get("name"), str), "tool_choice.name: Field required", "tool_choice.name")
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise bad_request(f"tool_choice.type: {kind!r} is not one of 'auto', 'any', 'tool', 'none'", param="tool_choice.type")


def reasoning_effort(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            raise bad_request("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
        return next((effort for bound, effort in _BUDGET_EFFORT if budget < bound), "high")
    if kind == "adaptive":
        config = body.get("output_config")
        effort = config.get("effort") if isinstance(config, dict) else None
        return _EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium"
    return None


def to_chat(body: dict[str, Any], *, reject_unsupported_tools: bool = False, keep_reasoning: bool = False) -> MessagesConversion:
    """`body` has passed `validate_request`."""
    b = _Builder(keep_reasoning)
    if body.get("system") is not None:
        b.system(body["system"], "system")
    for i, m in enumerate(body["messages"]):
        role, param = m["role"], f"messages.{i}.content"
        if role == "user":
            b.user(m["content"], param)
        elif role == "assistant":
            b.assistant(m["content"], param)
        else:
            b.system(m["content"], param)
    chat: dict[str, Any] = {"model": body["model"], "messages": b.out, "max_tokens": body["max_tokens"]}
    stream = body.get("stream") is True
    if stream:
        chat["stream"] = True
    conv = MessagesConversion(chat, stream, ignored=[k for k in IGNORED if body.get(k) is not None])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]
    stops = body.get("stop_sequences")
    if stops:
        _need(isinstance(stops, list) and all(isinstance(s, str) for s in stops),
              "stop_sequences: Input should be an array of strings", "stop_sequences")
        chat["stop"] = list(stops)
        conv.stop_sequences = list(stops)
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        chat["user"] = meta["user_id"]
    effort = reasoning_effort(body)
    if effort:
        chat["reasoning_effort"] = effort
    tools, conv.dropped_tools = _tools(body.get("tools"), reject_unsupported_tools)
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            choice, parallel = _tool_choice(body["tool_choice"])
            chat["tool_choice"] = choice
            if parallel is not None:
                chat["parallel_tool_calls"] = parallel
    return conv
