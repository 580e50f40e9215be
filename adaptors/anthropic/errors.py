"""Anthropic error responses -> OpenAI-style RelayErrors."""
from __future__ import annotations

from typing import Any

from ..kernel import jsonfast
from ..kernel.errors import RelayError, upstream_auth

# Anthropic error type -> (status, OpenAI error type, code) as a client of Relay sees it.
_BY_STATUS: dict[int, tuple[int, str, str | None]] = {
    400: (400, "invalid_request_error", None),
    404: (404, "invalid_request_error", "model_not_found"),
    413: (413, "invalid_request_error", "request_too_large"),
    429: (429, "rate_limit_error", "rate_limit_exceeded"),
    504: (504, "api_error", "upstream_timeout"),
    529: (503, "api_error", "upstream_overloaded"),
}
_STREAM_TYPES = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "invalid_request_error": 400,
    "request_too_large": 413,
    "billing_error": 402,
    "timeout_error": 504,
    "not_found_error": 404,
    "authentication_error": 401,
    "permission_error": 403,
}


def _message(body: bytes | dict[str, Any]) -> str | None:
    try:
        data = jsonfast.loads(body) if isinstance(body, (bytes, str)) else body
    except jsonfast.JSONDecodeError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    msg = err.get("message") if isinstance(err, dict) else None
    return msg if isinstance(msg, str) else None


def map_error(channel: str, status: int, headers: dict[str, str], body: bytes | dict[str, Any]) -> RelayError:
    if status in (401, 403):
        return upstream_auth(channel)
    message = _message(body)
    if status in _BY_STATUS:
        out_status, kind, code = _BY_STATUS[status]
    elif status >= 500:
        out_status, kind, code = 502, "api_error", "upstream_error"
    else:
        out_status, kind, code = status, "invalid_request_error", None
    if status == 529:
        message = f"upstream channel {channel!r} is overloaded; retry shortly ({message or 'overloaded'})"
    elif status >= 500:
        message = f"upstream channel {channel!r} failed: {message or f'HTTP {status}'}"
    keep = {k: v for k, v in headers.items() if k.lower() == "retry-after"}
    return RelayError(out_status, message or f"upstream channel {channel!r} answered HTTP {status}", type=kind, code=code, headers=keep)


def stream_error(channel: str, event: dict[str, Any]) -> RelayError:
    """An `error` event inside a stream, mapped as the HTTP status of its type would be."""
    raw = event.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}
    status = _STREAM_TYPES.get(str(err.get("type")), 500)
    return map_error(channel, status, {}, {"error": err})
