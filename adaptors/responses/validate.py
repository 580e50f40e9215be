"""Type checks for every Responses request field Relay reads, on every path (bridged and
native), before admission: a wrong type is a 400 naming its `param`, never a crash later or a
corrupted limit (a negative `max_output_tokens` would refund tokens to the tenant's bucket).

Input items are checked item by item by the bridge (request.py); here only their order: a
`function_call_output` must answer a `function_call` made earlier in the same input.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..kernel.chat import validated_object
from ..kernel.errors import bad_request


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Reasoning(_Open):
    effort: str | None = None
    summary: str | None = None


class TextOptions(_Open):
    format: dict[str, Any] | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[Any] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None
    service_tier: str | None = None
    reasoning: Reasoning | None = None
    text: TextOptions | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    stream: bool | None = None
    background: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    prompt_cache_key: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


_adapter = TypeAdapter(ResponsesRequest)


def validate_responses_request(body: Any) -> dict[str, Any]:
    request = validated_object(body, _adapter)
    if request.get("previous_response_id") is None and request.get("conversation") is None:
        check_call_outputs(request.get("input"))
    return request


def check_call_outputs(items: Any, earlier: set[str] | None = None) -> None:
    """Each `function_call_output` answers an earlier `function_call` of this input (OpenAI's
    rule; a chat upstream would reject the orphan later with a less useful error). Requests
    continuing a stored response are not checked here: the calls may be in the stored part."""
    if not isinstance(items, list):
        return
    calls: set[str] = set(earlier or ())  # call ids made before this input (a stored chain's)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        call_id = item.get("call_id")
        if item.get("type") == "function_call" and isinstance(call_id, str):
            calls.add(call_id)
        elif item.get("type") == "function_call_output" and isinstance(call_id, str) and call_id not in calls:
            param = f"input[{i}].call_id"
            raise bad_request(f"Invalid value for '{param}': no function_call with this call_id precedes it in 'input'.",
                              param=param, code="invalid_value")
