"""RelayError: every failure Relay reports, shaped as an OpenAI error object."""
from __future__ import annotations

from typing import Any

from . import jsonfast


class RelayError(Exception):
    """An error with the HTTP status and OpenAI error fields the client will see.

    `message` must be safe to show a client: never a key, a stack trace or another tenant's data.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        local: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        # Raised by Relay itself about this request (a local queue timed out, the request
        # could not be handed to the channel): says nothing of the upstream's health.
        self.local = local

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @property
    def retryable(self) -> bool:
        """Whether another channel may succeed where this one failed (used by failover)."""
        return self.status == 429 or self.status >= 500

    def __repr__(self) -> str:
        return f"RelayError({self.status}, {self.message!r}, code={self.code!r}, param={self.param!r})"


def redact(err: RelayError, secret: str | None) -> RelayError:
    """Removes a channel's own key from an upstream message before a client can see it
    (some upstreams quote the key they rejected)."""
    if secret and len(secret) >= 8 and secret in err.message:
        err.message = err.message.replace(secret, "[redacted]")
    return err


def bad_request(message: str, param: str | None = None, code: str | None = None) -> RelayError:
    return RelayError(400, message, param=param, code=code)


def upstream_unreachable(channel: str, detail: str) -> RelayError:
    return RelayError(502, f"upstream channel {channel!r} is unreachable: {detail}", type="api_error", code="upstream_unreachable")


def upstream_timeout(channel: str, what: str) -> RelayError:
    return RelayError(504, f"upstream channel {channel!r} timed out ({what})", type="api_error", code="upstream_timeout")


def upstream_auth(channel: str) -> RelayError:
    return RelayError(
        502,
        f"upstream channel {channel!r} rejected the gateway's credentials; the operator must fix the channel's api_key",
        type="api_error",
        code="upstream_auth_error",
    )


def upstream_json_object(channel: str, body: bytes, required: str, what: str) -> dict[str, Any]:
    """An upstream body parsed as a JSON object with a list under `required`, or a 502."""
    try:
        data = jsonfast.loads(body)
    except jsonfast.JSONDecodeError:
        raise upstream_bad_response(channel, "the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get(required), list):
        raise upstream_bad_response(channel, f"the body is not {what}")
    return data


def upstream_bad_response(channel: str, detail: str) -> RelayError:
    return RelayError(502, f"upstream channel {channel!r} sent an invalid response: {detail}", type="api_error", code="bad_upstream_response")
