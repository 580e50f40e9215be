"""Chat request -> Anthropic Messages request (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..kernel import jsonfast
from ..kernel.chat import max_output_tokens
from ..kernel.chunks import REASONING_KEY
from ..kernel.content import content_text
from ..kernel.errors import bad_request
from .thinking import decode_blocks

# reasoning_effort -> thinking budget. Anthropic needs budget_tokens >= 1024 and < max_tokens.
THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_BUDGET = 1024
# The forced tool that carries structured output (response_format) on Anthropic.
JSON_TOOL = "json_response"
# Parameters Anthropic has no equivalent for, which change nothing essential when left out.
IGNORED = ("seed", "frequency_penalty", "presence_penalty", "logit_bias", "service_tier", "store", "metadata", "prediction")


@dataclass
class Converted:
    body: dict[str, Any]
    json_tool: str | None = None  # set when the answer arrives as this tool's input
    ignored: list[str] = field(default_factory=list)


def _data_url(url: str, param: str) -> tuple[str, str]:
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or ";base64" not in head:
        raise bad_request(f"Invalid value for '{param}': data URLs must be base64 ('data:<type>;base64,...').", param=param)
    return head[5:].split(";", 1)[0], data


def content_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """Chat content (string or parts) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                media, data = _data_url(url, f"{p}.image_url.url")
                out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            elif url.startswith(("http://", "https://")):
                out.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                raise bad_request(f"Invalid value for '{p}.image_url.url': expected an http(s) URL or a data URL.", param=f"{p}.image_url.url")
        elif kind == "file":
            f = part.get("file") or {}
            if f.get("file_data"):
                media, data = _data_url(f["file_data"], f"{p}.file.file_data")
                block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
            elif f.get("file_url"):
                block = {"type": "document", "source": {"type": "url", "url": f["file_url"]}}
            else:
                raise bad_request("Files by 'file_id' cannot be sent to Anthropic; send 'file_data'.", param=f"{p}.file")
            if f.get("filename"):
                block["title"] = f["filename"]
            out.append(block)
        elif kind == "refusal":
            out.append({"type": "text", "text": part.get("refusal", "")})
        else:
            raise bad_request(f"Content parts of type {kind!r} cannot be sent to Anthropic.", param=f"{p}.type")
    return out


def _thinking_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking blocks a client sent back: Responses reasoning items (via the bridge) or a
    chat message's `reasoning_signature`."""
    blocks: list[dict[str, Any]] = []
    for item in msg.get(REASONING_KEY) or ():
        blocks += decode_blocks(item.get("encrypted_content") or "")
    if isinstance(msg.get("reasoning_signature"), str):
        blocks += decode_blocks(msg["reasoning_signature"])
    return blocks


def _assistant_blocks(msg: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _thinking_blocks(msg) + content_blocks(msg.get("content"), f"{param}.content")
    for j, call in enumerate(msg.get("tool_calls") or ()):
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = jsonfast.loads(raw)
        except jsonfast.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            where = f"{param}.tool_calls[{j}].function.arguments"
            raise bad_request(f"Invalid value for '{where}': tool call arguments must be a JSON object.", param=where)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
    return blocks


def _turns(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant turns)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # consecutive same-role turns merge
        else:
            turns.append({"role": role, "content": blocks})

    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            text = content_text(msg.get("content"))
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            add("user", content_blocks(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            add("assistant", _assistant_blocks(msg, param))
        elif role == "tool":
            content = msg.get("content")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
            blocks = content_blocks(content, f"{param}.content")
            result["content"] = blocks if blocks else ""
            add("user", [result])
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    if not turns:
        raise bad_request("At least one user message is required.", param="messages")
    # Tool results must lead their user turn, in the order of the calls.
    for t in turns:
        if t["role"] == "user":
            t["content"].sort(key=lambda b: b["type"] != "tool_result")
    return system, turns


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None or choice == "auto":
        out = {"type": "auto"} if parallel is False else None
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise bad_request("Invalid value for 'tool_choice'.", param="tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def to_messages(req: dict[str, Any], model: str, default_max_tokens: int) -> Converted:
    if (req.get("n") or 1) > 1:
        raise bad_request("Anthropic channels return one choice; 'n' must be 1.", param="n")
    if req.get("logprobs") or req.get("top_logprobs"):
        raise bad_request("Anthropic channels cannot return logprobs.", param="logprobs")
    system, turns = _turns(req["messages"])
    body: dict[str, Any] = {"model": model, "messages": turns}
    out = Converted(body, ignored=[k for k in IGNORED if req.get(k) is not None])
    if system:
        body["system"] = system
    explicit_max = max_output_tokens(req)
    body["max_tokens"] = explicit_max or default_max_tokens

    effort = req.get("reasoning_effort")
    if effort and effort != "none":
        budget = THINKING_BUDGET.get(effort)
        if budget is None:
            raise bad_request(f"Invalid value for 'reasoning_effort': {effort!r}.", param="reasoning_effort")
        if explicit_max:  # OpenAI counts reasoning inside max_completion_tokens
            budget = min(budget, explicit_max - 1)
            if budget < MIN_BUDGET:
                raise bad_request(f"With reasoning_effort, max tokens must exceed {MIN_BUDGET} on Anthropic channels.", param="max_tokens")
        else:
            body["max_tokens"] = default_max_tokens + budget
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}

    temperature = req.get("temperature")
    if temperature is not None:
        if temperature > 1:
            raise bad_request("Anthropic accepts temperature between 0 and 1.", param="temperature")
        body["temperature"] = temperature
    if req.get("top_p") is not None:
        body["top_p"] = req["top_p"]
    stop = req.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(req.get("user"), str):
        body["metadata"] = {"user_id": req["user"]}

    tools = [
        {"name": t["function"]["name"], "description": t["function"].get("description") or "",
         "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
        for t in req.get("tools") or ()
    ]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice

    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        _structured_output(body, out, fmt, tools)
    if "thinking" in body and not _thinking_can_continue(body):
        # Sending the turn as it is would be refused; the answer comes without thinking.
        del body["thinking"]
        out.ignored.append("reasoning_effort")
    if req.get("stream"):
        body["stream"] = True
    return out


def _structured_output(body: dict[str, Any], out: Converted, fmt: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    """response_format on Anthropic, which has no JSON mode: the answer comes as the input of
    a tool of Relay's (turned back into the message text by the response converters).

    - no client tools (or tool_choice none): that tool is forced; forced tool use excludes
      thinking, so thinking is dropped;
    - a tool_choice that forces a client tool: that call is the answer; nothing is added;
    - client tools on auto: the answer tool is offered beside them, not forced, so the model
      calls the client's tools while it needs them and answers through ours at the end.
    """
    choice = body.get("tool_choice") or {}
    if tools and choice.get("type") in ("tool", "any"):
        return
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
    taken = {t["name"] for t in tools}
    name = JSON_TOOL
    while name in taken:  # never shadow a client tool of the same name
        name += "_"
    answer_tool = {"name": name, "input_schema": schema or {"type": "object"}}
    out.json_tool = name
    if tools and choice.get("type") != "none":
        answer_tool["description"] = ("Give your final answer by calling this tool with it, once you need no other "
                                      "tool. Its input is the answer.")
        body["tools"] = [*tools, answer_tool]
        return
    answer_tool["description"] = "Return the answer as this tool's input."
    body["tools"] = [answer_tool]
    body["tool_choice"] = {"type": "tool", "name": name}
    body.pop("thinking", None)  # Anthropic does not allow forced tool use with thinking


def _thinking_can_continue(body: dict[str, Any]) -> bool:
    """Whether Anthropic accepts thinking for this request: no forced tool use, and the last
    assistant turn, when it called tools, starts with its signed thinking block."""
    if (body.get("tool_choice") or {}).get("type") in ("tool", "any"):
        return False
    last = next((t for t in reversed(body["messages"]) if t["role"] == "assistant"), None)
    if last is None or not any(b.get("type") == "tool_use" for b in last["content"]):
        return True
    return last["content"][0].get("type") in ("thinking", "redacted_thinking")
