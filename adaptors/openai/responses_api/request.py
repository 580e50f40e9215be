"""Chat request -> Responses request (pure), for upstreams that speak only the Responses API.

The chat request was validated at the edge (relay_adaptors.kernel.chat), so shapes are known here;
what the Responses API cannot express is either a 400 naming its chat `param` (when dropping
it would change the answer's form: audio input, an unknown response format) or left out and
named in `ignored` (sampling knobs with no Responses equivalent: `stop`, `seed`, ...). Fields
that are not chat fields at all are passed on as they are: they are meant for this upstream
(e.g. `reasoning: {"summary": "auto"}` or `include`), as with every other `openai` channel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...kernel.errors import bad_request

# Chat fields with no Responses counterpart, left out (and reported) when set to a value
# that would matter.
_IGNORED = ("stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
            "audio", "prediction", "web_search_options", "functions", "function_call")
# Chat fields that keep their name and meaning in the Responses API.
_SAME = ("temperature", "top_p", "user", "parallel_tool_calls", "metadata", "service_tier",
         "prompt_cache_key", "prompt_cache_retention", "safety_identifier")
# Every chat field this module reads; anything else is not chat and is passed on.
_CHAT_FIELDS = frozenset((*_IGNORED, *_SAME, "model", "messages", "stream", "stream_options", "n", "store", "modalities",
                          "max_tokens", "max_completion_tokens", "tools", "tool_choice", "response_format",
                          "reasoning_effort", "verbosity"))


@dataclass(slots=True)
class ResponsesRequest:
    body: dict[str, Any]
    ignored: list[str] = field(default_factory=list)  # chat fields left out, for x-relay-ignored-params


def _texts(content: Any) -> str:
    """The text of string-or-parts content (system, assistant and tool messages)."""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text") or p.get("refusal") or "") for p in content or () if isinstance(p, dict))


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            image = part["image_url"]
            parts.append({"type": "input_image", "image_url": image["url"], "detail": image.get("detail") or "auto"})
        elif kind == "file":
            file = part.get("file") or {}
            parts.append({"type": "input_file", **{k: file[k] for k in ("file_id", "file_data", "filename") if file.get(k)}})
        else:
            raise bad_request(f"Invalid value for '{param}[{j}].type': {kind!r} content cannot be sent to this model's "
                              "channel (it speaks only the Responses API).", param=f"{param}[{j}].type")
    return parts


def _input(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Chat messages -> (instructions, input items). The system/developer messages before the
    conversation starts become `instructions`; later ones stay in place as messages."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role, content = m["role"], m.get("content")
        if role in ("system", "developer"):
            if items:
                items.append({"type": "message", "role": role, "content": _texts(content)})
            else:
                instructions.append(_texts(content))
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": _user_content(content, f"messages[{i}].content")})
        elif role == "assistant":
            text = _texts(content)
            if text:
                items.append({"type": "message", "role": "assistant", "content": text})
            for tc in m.get("tool_calls") or ():
                fn = tc["function"]
                items.append({"type": "function_call", "call_id": tc["id"], "name": fn["name"], "arguments": fn["arguments"]})
        else:  # tool
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": _texts(content)})
    return ("\n\n".join(instructions) if instructions else None), items


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    out: dict[str, Any] = {"type": "function", "name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    # Responses functions are strict unless told otherwise; chat functions are not.
    out["strict"] = bool(fn.get("strict"))
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance((choice.get("function") or {}).get("name"), str):
        return {"type": "function", "name": choice["function"]["name"]}
    if kind == "allowed_tools" and isinstance(choice.get("allowed_tools"), dict):
        allowed = choice["allowed_tools"]
        tools = [{"type": "function", "name": (t.get("function") or {}).get("name")} for t in allowed.get("tools") or ()]
        return {"type": "allowed_tools", "mode": allowed.get("mode", "auto"), "tools": tools}
    raise bad_request("Invalid value for 'tool_choice': expected 'auto', 'none', 'required', a function "
                      "({\"type\": \"function\", \"function\": {\"name\": ...}}) or allowed_tools.", param="tool_choice")


def _text_format(fmt: Any) -> dict[str, Any]:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        schema = fmt["json_schema"]
        out = {"type": "json_schema", "name": schema.get("name") or "response"}
        out.update({k: schema[k] for k in ("schema", "strict", "description") if schema.get(k) is not None})
        return out
    raise bad_request(f"Invalid value for 'response_format.type': {kind!r} (expected text, json_object or json_schema).",
                      param="response_format.type")


def _ignored(request: dict[str, Any]) -> list[str]:
    out = [k for k in _IGNORED if request.get(k) not in (None, False, [], {})]
    if request.get("n") not in (None, 1):
        out.append("n")
    if request.get("store") is True:  # the upstream must keep nothing: Relay asks `store: false`
        out.append("store")
    if request.get("modalities") not in (None, ["text"]):
        out.append("modalities")
    return out


def to_responses(request: dict[str, Any], upstream_model: str, stream: bool) -> ResponsesRequest:
    """The Responses request for a (validated) chat request."""
    body: dict[str, Any] = {k: v for k, v in request.items() if k not in _CHAT_FIELDS}
    instructions, items = _input(request["messages"])
    body["model"] = upstream_model
    if instructions is not None:
        body["instructions"] = instructions
    body["input"] = items
    body["store"] = False
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    for key in _SAME:
        if request.get(key) is not None:
            body[key] = request[key]
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    if request.get("tools"):
        body["tools"] = [_tool(t) for t in request["tools"]]
    if request.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(request["tool_choice"])
    if request.get("reasoning_effort") is not None:
        reasoning = body.get("reasoning")
        body["reasoning"] = {**(reasoning if isinstance(reasoning, dict) else {}), "effort": request["reasoning_effort"]}
    text: dict[str, Any] = dict(body["text"]) if isinstance(body.get("text"), dict) else {}
    if request.get("response_format") is not None:
        text["format"] = _text_format(request["response_format"])
    if request.get("verbosity") is not None:
        text["verbosity"] = request["verbosity"]
    if text:
        body["text"] = text
    return ResponsesRequest(body, _ignored(request))


# Responses parameter -> the chat parameter a client of Relay sent, for upstream 400s.
_CHAT_PARAMS = {"max_output_tokens": "max_tokens", "text.format": "response_format", "text.verbosity": "verbosity",
                "reasoning.effort": "reasoning_effort", "reasoning": "reasoning_effort", "instructions": "messages",
                "input": "messages"}


def chat_param(param: str | None, request: dict[str, Any]) -> str | None:
    """An upstream error's `param` as the chat client knows it (`max_output_tokens` is the
    client's `max_completion_tokens` or `max_tokens`; `input[3]...` is somewhere in `messages`)."""
    if param is None:
        return None
    head = param.split("[", 1)[0]
    for resp_name, chat_name in _CHAT_PARAMS.items():
        if param == resp_name or param.startswith(resp_name + ".") or head == resp_name:
            if chat_name == "max_tokens" and request.get("max_completion_tokens") is not None:
                return "max_completion_tokens"
            return chat_name
    if head == "tools":
        return param.replace(".name", ".function.name").replace(".parameters", ".function.parameters")
    return param
