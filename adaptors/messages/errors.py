"""RelayError -> the Anthropic error body `{"type": "error", "error": {...}, "request_id": ...}`.

The status Relay chose stays; the Anthropic error type follows from it (what Anthropic's SDKs
and Claude Code read). 413 is `request_too_large`, as the API sends it, although the OpenAPI
document's error union does not list that type.
"""
from __future__ import annotations

from typing import Any

from ..kernel.errors import RelayError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(err: RelayError, request_id: str | None) -> dict[str, Any]:
    """Anthropic's error shape, with every configured secret scrubbed (as RelayError.body does)."""
    message = err.redacted().message
    return {"type": "error", "error": {"type": error_type(err.status), "message": message}, "request_id": request_id}
