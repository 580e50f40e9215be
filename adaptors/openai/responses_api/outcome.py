"""How a Response ended, in chat terms: usage, finish_reason, and failures as RelayErrors.
Shared by the non-streaming and the streaming conversion, so both say the same."""
from __future__ import annotations

from typing import Any

from ...kernel import chunks
from ...kernel.errors import RelayError
from ...kernel.usage import Usage

# Response error codes that say the request was at fault (no other channel would do better).
_CLIENT_CODES = ("invalid_prompt", "invalid_image", "invalid_base64_image", "image_too_large", "image_too_small",
                 "image_parse_error", "image_content_policy_violation", "invalid_image_mode", "empty_image_file",
                 "unsupported_image_media_type", "image_file_too_large", "failed_to_download_image", "image_file_not_found")


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage -> chat usage: `input_tokens` already includes the cached tokens, as
    `prompt_tokens` does."""
    return Usage.from_responses(usage).chat() if isinstance(usage, dict) else None


def finish_reason(response: dict[str, Any], called_tools: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called_tools else "stop"


def failure(channel: str, error: Any) -> RelayError:
    """A failed Response's `error`, or a stream's `error` event, as the RelayError clients see."""
    err = error if isinstance(error, dict) else {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    text = f"upstream channel {channel!r} failed: {message or code or 'the response failed'}"
    param = err.get("param") if isinstance(err.get("param"), str) else None
    if code == "rate_limit_exceeded":
        return RelayError(429, text, type="rate_limit_error", code=code)
    if code in _CLIENT_CODES:
        return RelayError(400, text, type="invalid_request_error", code=code, param=param)
    return RelayError(502, text, type="api_error", code=code or "upstream_error", param=param)


def completion_id(response_id: Any) -> str:
    """The chat id for a Response: the upstream's id stays recognisable in logs."""
    if isinstance(response_id, str) and response_id:
        return "chatcmpl-" + response_id.removeprefix("resp_")
    return chunks.completion_id()
