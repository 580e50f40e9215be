"""Small aiohttp helpers: bounded body reads, JSON and error responses, request ids."""
from __future__ import annotations

import itertools
import os
import re
from typing import Any

from aiohttp import web

from relay_adaptors import jsonfast
from relay_adaptors.errors import RelayError, bad_request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Generated ids: a random per-process prefix and a counter; unique without a syscall each.
_ID_PREFIX = "req_" + os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def request_id(request: web.Request) -> str:
    """The client's x-request-id when it is a sane token, else a new one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


def _too_large(limit: int) -> RelayError:
    return RelayError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


async def read_json(request: web.Request, limit: int) -> Any:
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        raw = await request.read()  # bounded by the declared length
    else:  # chunked upload: count as it comes
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
        raw = b"".join(parts)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        return jsonfast.loads(raw)
    except jsonfast.JSONDecodeError as e:
        raise bad_request(f"The request body is not valid JSON: {e.args[0] if e.args else 'parse error'}.") from None


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonfast.dumps(payload), status=status, content_type="application/json", headers=headers)


def error_response(err: RelayError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(err.body(), err.status, {**err.headers, **(headers or {})})
