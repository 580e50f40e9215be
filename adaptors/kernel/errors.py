"""RelayError: every failure Relay reports, shaped as an OpenAI error object."""
from __future__ import annotations

from typing import Any

from . import jsonfast
from .redaction import Redactor
from .redaction import current as current_redactor


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
        """The OpenAI error object, with every configured secret redacted from every field."""
        r = self.redacted()
        return {"error": {"message": r.message, "type": r.type, "param": r.param, "code": r.code}}

    def redacted(self) -> RelayError:
        """A copy whose client-visible fields hold no configured secret (for writers that
        read the fields themselves, e.g. a Responses `response.failed` event)."""
        scrub = current_redactor()
        return RelayError(self.status, scrub(self.message), type=scrub(self.type), code=scrub.optional(self.code),
                          param=scrub.optional(self.param), headers=self.headers, local=self.local)

    @property
    def retryable(self) -> bool:
        """Whether another channel may succeed where this one failed (used by failover)."""
        return self.status == 429 or self.status >= 500

    def __repr__(self) -> str:
        return f"RelayError({self.status}, {self.message!r}, code={self.code!r}, param={self.param!r})"


def scrubbed(err: RelayError, scrub: Redactor) -> RelayError:
    """`err` with `scrub` applied to every field a client sees: message, type, code, param
    and headers (in place)."""
    err.message = scrub(err.message)
    err.args = (err.message,)
    err.type, err.code, err.param = scrub(err.type), scrub.optional(err.code), scrub.optional(err.param)
    err.headers = {k: scrub(v) for k, v in err.headers.items()}
    return err


def redact(err: RelayError, secret: str | None) -> RelayError:
    """Removes a channel's own key from every field of an upstream error (some upstreams quote
    the key they rejected). Serialization redacts every configured secret again (`body`);
    this early pass also keeps the key out of logs written before that."""
    return scrubbed(err, Redactor([secret] if secret else []))


def bad_request(message: str, param: str | None = None, code: str | None = None) -> RelayError:
    return RelayError(400, message, param=param, code=code)


def upstream_unreachable(channel: str, detail: str) -> RelayError:
    return RelayError(502, f"upstream channel {channel!r} is unreachable: {detail}", type="api_error", code="upstream_unreachable")


def upstream_redirect(channel: str, status: int) -> RelayError:
    # The Location is not repeated: it is the upstream's to know, and may embed a token.
    return RelayError(502, f"upstream channel {channel!r} answered with a redirect ({status}); Relay does not follow "
                      "redirects, so the operator must point the channel's base_url at the final address",
                      type="api_error", code="upstream_redirect")


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


def object_field(event: dict[str, Any], key: str) -> dict[str, Any]:
    """A field of an upstream event that must be an object when present ({} when absent or
    null); a value of another type is a ValueError, which stream readers answer as a 502."""
    value = event.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise ValueError(f"{event.get('type')}.{key} is not an object")
    return value


def upstream_bad_response(channel: str, detail: str) -> RelayError:
    return RelayError(502, f"upstream channel {channel!r} sent an invalid response: {detail}", type="api_error", code="bad_upstream_response")
