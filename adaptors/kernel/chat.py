"""Typed view of the inbound OpenAI chat request, used to validate it at the edge.

Validation names the offending `param` the way OpenAI does (`messages[2].content`). The
request itself stays a plain dict afterwards, so unknown fields pass through untouched.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import RelayError, bad_request
from .params import format_loc


class Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageURL(Open):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Open):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(Open):
    type: Literal["input_audio", "file", "refusal"]


Part = Annotated[TextPart | ImagePart | OtherPart, Field(discriminator="type")]
Content = str | list[Part]


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(Open):
    role: Literal["system", "developer"]
    content: Content


class UserMessage(Open):
    role: Literal["user"]
    content: Content


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(Open):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDef(Open):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(Open):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(Open):
    include_usage: bool | None = None


class JsonSchemaFormat(Open):
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatRequest(Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None  # its shapes are each adaptor's to check
    parallel_tool_calls: bool | None = None
    stop: str | list[str] | None = None
    # Read by one adaptor or another; typed here so a wrong type is a 400, not a crash there.
    user: str | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


_adapter = TypeAdapter(ChatRequest)
_TYPE_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}


def _field_path(loc: tuple[object, ...]) -> tuple[str | int, ...]:
    """Pydantic puts union member names ('str', 'list[...]') and discriminator tags ('user')
    into error locations; neither is a field of the request."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, str):
            if part in _TYPE_NAMES or "[" in part:
                continue
            if len(out) >= 2 and isinstance(out[-1], int) and isinstance(loc[i - 1], int):
                tags = _ROLES if out[-2] == "messages" else _PART_TYPES if out[-2] == "content" else ()
                if part in tags:
                    continue
        out.append(part)  # type: ignore[arg-type]
    return tuple(out)


def error_from_validation(e: ValidationError) -> RelayError:
    """The most specific validation problem as an OpenAI 400 that names its param."""
    # With unions, every member reports; the deepest location is the one the client meant.
    err = max(e.errors(include_url=False, include_input=False), key=lambda x: len(x["loc"]))
    loc = _field_path(err["loc"])
    param = format_loc(loc) or None
    kind = err["type"]
    if kind == "missing":
        msg = f"Missing required parameter: '{param}'."
    elif kind == "union_tag_invalid":
        tag_field = "role" if "messages" in loc and len(loc) == 2 else "type"
        param = f"{param}.{tag_field}"
        msg = f"Invalid value for '{param}': {err['ctx']['tag']!r} is not supported (expected one of {err['ctx']['expected_tags']})."
    elif kind == "union_tag_not_found":
        tag_field = err["ctx"]["discriminator"].strip("'")
        param = f"{param}.{tag_field}"
        msg = f"Missing required parameter: '{param}'."
    else:
        msg = f"Invalid value for '{param}': {err['msg'].removeprefix('Value error, ')}."
    return bad_request(msg, param=param, code="missing_required_parameter" if "Missing" in msg else "invalid_value")


def validated_object(body: Any, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """`body` as a JSON object that `adapter` accepts, or the 400 naming the first bad param."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        adapter.validate_python(body)
    except ValidationError as e:
        raise error_from_validation(e) from None
    return body


def validate_chat_request(body: Any) -> dict[str, Any]:
    request = validated_object(body, _adapter)
    check_tool_results(request["messages"])
    return request


def check_tool_results(messages: list[dict[str, Any]]) -> None:
    """Every `tool` message answers a call an earlier assistant message made (OpenAI's rule;
    other upstreams reject an orphan later, with a less useful error)."""
    calls: set[str] = set()
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant":
            calls.update(tc["id"] for tc in msg.get("tool_calls") or ())
        elif msg["role"] == "tool" and msg["tool_call_id"] not in calls:
            param = f"messages[{i}].tool_call_id"
            raise bad_request(f"Invalid value for '{param}': it matches no tool call in an earlier assistant message.",
                              param=param, code="invalid_value")


def wants_usage_chunk(req: dict[str, Any]) -> bool:
    opts = req.get("stream_options")
    return bool(isinstance(opts, dict) and opts.get("include_usage"))


def max_output_tokens(chat: dict[str, Any]) -> int | None:
    """The output cap a chat request asks for (`max_completion_tokens` wins over the older
    `max_tokens`), or None."""
    value = chat.get("max_completion_tokens") or chat.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
