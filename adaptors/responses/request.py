"""Responses request -> chat request (pure).

What cannot be honoured on a chat upstream is a 400 naming its `param`; nothing that would
change the answer is dropped silently. Hosted tool types are the one exception, by policy:
dropped and reported (x-relay-dropped-tools), or rejected when the operator says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..kernel.chunks import REASONING_KEY
from ..kernel.errors import bad_request
from .compact import decode_summary, summary_message
from .tools import ConvertedTools, ToolNames, convert_tool_choice, convert_tools

# `previous_response_id`, `conversation` and `background` are Relay's own (relay.stateful),
# resolved into `input` before a request is converted.
_UNSUPPORTED = {
    "prompt": "Stored prompt templates are not available through Relay.",
}


@dataclass
class ChatConversion:
    chat: dict[str, Any]
    names: ToolNames
    tools: ConvertedTools
    stream: bool
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the Response repeats


def _need(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise bad_request(message, param=param)


def _text_parts(content: Any, param: str, allowed: set[str]) -> list[dict[str, Any]] | str:
    """Responses content (string or parts) -> chat content (string or parts)."""
    if isinstance(content, str):
        return content
    _need(isinstance(content, list), f"Invalid value for '{param}': expected a string or an array of content parts.", param)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise bad_request(f"Invalid value for '{p}.type': {kind!r} is not supported here (expected one of {sorted(allowed)}).", param=f"{p}.type")
        if kind in ("input_text", "output_text", "text"):
            _need(isinstance(part.get("text"), str), f"Missing required parameter: '{p}.text'.", f"{p}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            if part.get("file_id"):
                raise bad_request("Images by 'file_id' are not available through Relay; send 'image_url' (a URL or data URL).", param=f"{p}.file_id")
            _need(isinstance(part.get("image_url"), str), f"Missing required parameter: '{p}.image_url'.", f"{p}.image_url")
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            if part.get("file_id"):
                raise bad_request("Files by 'file_id' are not available through Relay; send 'file_data' or 'file_url'.", param=f"{p}.file_id")
            file = {k: part[k] for k in ("file_data", "file_url", "filename") if part.get(k)}
            _need("file_data" in file or "file_url" in file, f"Missing required parameter: '{p}.file_data'.", f"{p}.file_data")
            parts.append({"type": "file", "file": file})
    return parts


_USER_PARTS = {"input_text", "input_image", "input_file"}
_ASSISTANT_PARTS = {"output_text", "refusal", "input_text"}


def _plain(content: list[dict[str, Any]] | str) -> list[dict[str, Any]] | str:
    """A list of text-only parts collapses to a string: every chat upstream takes that."""
    if isinstance(content, list) and all(p["type"] == "text" for p in content):
        return "".join(p["text"] for p in content)
    return content


class _Messages:
    """Builds the chat message list, merging what chat expects in one assistant turn."""

    def __init__(self, names: ToolNames, keep_reasoning: bool):
        self.out: list[dict[str, Any]] = []
        self.names = names
        self.keep_reasoning = keep_reasoning
        self.pending_reasoning: list[dict[str, Any]] = []

    def _assistant(self) -> dict[str, Any]:
        """The assistant turn to extend: the last message if it is one and has no tool
        results after it, else a new one (which takes any pending reasoning)."""
        if self.out and self.out[-1]["role"] == "assistant" and not self.pending_reasoning:
            return self.out[-1]
        msg: dict[str, Any] = {"role": "assistant", "content": None}
        if self.pending_reasoning:
            msg[REASONING_KEY] = self.pending_reasoning
            self.pending_reasoning = []
        self.out.append(msg)
        return msg

    def message(self, item: dict[str, Any], param: str) -> None:
        role = item.get("role")
        if role == "assistant":
            text = _plain(_text_parts(item.get("content", ""), f"{param}.content", _ASSISTANT_PARTS))
            msg = self._assistant()
            if msg.get("tool_calls") or msg.get("content"):
                msg = {"role": "assistant", "content": None}
                self.out.append(msg)
            msg["content"] = text if isinstance(text, str) else "".join(p.get("text", "") for p in text)
            return
        if role not in ("user", "system", "developer"):
            raise bad_request(f"Invalid value for '{param}.role': {role!r} (expected user, assistant, system or developer).", param=f"{param}.role")
        content = _plain(_text_parts(item.get("content"), f"{param}.content", _USER_PARTS))
        self.out.append({"role": "system" if role == "developer" else role, "content": content})

    def function_call(self, item: dict[str, Any], param: str) -> None:
        for key in ("call_id", "name", "arguments"):
            _need(isinstance(item.get(key), str), f"Missing required parameter: '{param}.{key}'.", f"{param}.{key}")
        msg = self._assistant()
        msg.setdefault("tool_calls", []).append({
            "id": item["call_id"],
            "type": "function",
            "function": {"name": self.names.flat(item.get("namespace"), item["name"]), "arguments": item["arguments"]},
        })

    def function_call_output(self, item: dict[str, Any], param: str) -> None:
        _need(isinstance(item.get("call_id"), str), f"Missing required parameter: '{param}.call_id'.", f"{param}.call_id")
        output = item.get("output")
        if isinstance(output, list):
            output = _plain(_text_parts(output, f"{param}.output", _USER_PARTS))
        _need(isinstance(output, (str, list)), f"Missing required parameter: '{param}.output'.", f"{param}.output")
        self.out.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})

    def compaction(self, item: dict[str, Any], param: str) -> None:
        """A compaction item from Relay's /v1/responses/compact: the summary it carries."""
        encrypted = item.get("encrypted_content")
        p = f"{param}.encrypted_content"
        if not isinstance(encrypted, str):
            raise bad_request(f"Missing required parameter: '{p}'.", param=p)
        summary = decode_summary(encrypted)
        if summary is None:
            raise bad_request(f"Invalid value for '{p}': this compaction was not made by Relay (OpenAI's encrypted "
                              "compactions can be read only by OpenAI); compact the conversation through Relay's "
                              "/v1/responses/compact, or send its items uncompacted.", param=p, code="invalid_value")
        self.out.append(summary_message(summary))

    def reasoning(self, item: dict[str, Any]) -> None:
        if self.keep_reasoning:
            self.pending_reasoning.append(
                {k: item[k] for k in ("summary", "encrypted_content", "content") if item.get(k) is not None}
            )


def convert_input(raw: Any, names: ToolNames, keep_reasoning: bool) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    _need(isinstance(raw, list) and len(raw) > 0, "Invalid value for 'input': expected a string or a non-empty array of items.", "input")
    msgs = _Messages(names, keep_reasoning)
    for i, item in enumerate(raw):
        param = f"input[{i}]"
        _need(isinstance(item, dict), f"Invalid value for '{param}': expected an object.", param)
        kind = item.get("type", "message" if "role" in item else None)
        match kind:
            case "message":
                msgs.message(item, param)
            case "function_call":
                msgs.function_call(item, param)
            case "function_call_output":
                msgs.function_call_output(item, param)
            case "reasoning":
                msgs.reasoning(item)
            case "compaction":
                msgs.compaction(item, param)
            case _:
                raise bad_request(
                    f"Invalid value for '{param}.type': input items of type {kind!r} are not supported through Relay.",
                    param=f"{param}.type",
                )
    return msgs.out


def to_chat(body: dict[str, Any], *, reject_unsupported_tools: bool = False, keep_reasoning: bool = False) -> ChatConversion:
    """`body` has passed validate_responses_request (the handler validates it once)."""
    _need("input" in body, "Missing required parameter: 'input'.", "input")
    for key, why in _UNSUPPORTED.items():
        if body.get(key) is not None:
            raise bad_request(why, param=key, code="unsupported_parameter")

    names = ToolNames()
    tools = convert_tools(body.get("tools"), names, reject_unsupported_tools)
    messages = convert_input(body["input"], names, keep_reasoning)
    instructions = body.get("instructions")
    if instructions is not None:
        _need(isinstance(instructions, str), "Invalid value for 'instructions': expected a string.", "instructions")
        messages.insert(0, {"role": "system", "content": instructions})

    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    stream = body.get("stream") is True
    if stream:
        chat["stream"] = True
    if tools.chat_tools:
        chat["tools"] = tools.chat_tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = convert_tool_choice(body["tool_choice"], names)
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    for src, dst in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("user", "user"), ("service_tier", "service_tier")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict):
        chat_fmt = _response_format(fmt)
        if chat_fmt:
            chat["response_format"] = chat_fmt

    echo = {
        "instructions": instructions,
        "tools": tools.kept,
        "tool_choice": body.get("tool_choice", "auto"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "metadata": body.get("metadata") or {},
        "max_output_tokens": body.get("max_output_tokens"),
        "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": (reasoning or {}).get("summary")},
        "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
        "store": body.get("store") is not False,  # the API's default: stored
        "truncation": body.get("truncation") or "disabled",
        "service_tier": body.get("service_tier") or "default",
    }
    for optional in ("user", "prompt_cache_key"):  # strings in the spec: absent rather than null
        if isinstance(body.get(optional), str):
            echo[optional] = body[optional]
    return ChatConversion(chat, names, tools, stream, echo)


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "json_schema":
        _need(isinstance(fmt.get("schema"), dict), "Missing required parameter: 'text.format.schema'.", "text.format.schema")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        schema.setdefault("name", "response")
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind in (None, "text"):
        return None
    raise bad_request(f"Invalid value for 'text.format.type': {kind!r}.", param="text.format.type")
