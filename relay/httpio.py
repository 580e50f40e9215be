"""Small aiohttp helpers: bounded body reads, JSON and error responses, request ids."""
from __future__ import annotations

import asyncio
import itertools
import os
import re
from typing import Any

from aiohttp import web

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.errors import RelayError, bad_request

from .appkeys import RUNTIME

# A request whose connection must close once its answer is written (its body stalled).
CLOSE_AFTER = web.RequestKey("close_after", bool)
# Deeper JSON is refused at parse time: nothing legitimate nests this far, and deeper values
# break encoders (orjson stops at 255) and recursive walkers further along.
MAX_JSON_DEPTH = 128

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


async def read_json(request: web.Request, limit: int, timeout: float | None = None) -> Any:
    """The body as JSON: at most `limit` bytes, received within `timeout` seconds (default:
    the live config's server.body_read_timeout), nested at most MAX_JSON_DEPTH deep."""
    try:
        if request.content.is_eof() and request.content_length is not None:
            raw = await _read_body(request, limit)  # all of it is here already: no timer to arm
        else:
            if timeout is None:
                timeout = _body_timeout(request)
            async with asyncio.timeout(timeout):
                raw = await _read_body(request, limit)
    except TimeoutError:
        request[CLOSE_AFTER] = True
        raise RelayError(408, f"The request body did not arrive within {timeout:g} seconds.", code="request_timeout",
                         headers={"Connection": "close"}) from None
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        value = jsonfast.loads(raw)
    except jsonfast.JSONDecodeError as e:
        raise bad_request(f"The request body is not valid JSON: {e.args[0] if e.args else 'parse error'}.") from None
    # Counting brackets is C-speed; only a body with enough of them can be too deep to walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        too_deep = deepest_field(value, MAX_JSON_DEPTH)
        if too_deep is not None:
            raise bad_request(f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.", param=too_deep or None,
                              code="json_too_deep")
    return value


def deepest_field(value: Any, limit: int) -> str | None:
    """None when `value` nests at most `limit` containers deep; else the top-level field
    under which it goes deeper ("" when the top level is not an object)."""
    tops = value.items() if isinstance(value, dict) else [("", value)]
    for name, top in tops:
        stack = [(top, 2 if isinstance(value, dict) else 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, dict):
                children: Any = node.values()
            elif isinstance(node, list):
                children = node
            else:
                continue
            if depth > limit:
                return str(name)
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return None


async def _read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        # Bounded by the declared length; read from the stream, not request.read(), which
        # keeps a copy of the raw body on the request for as long as the answer streams.
        return await request.content.read()
    parts: list[bytes] = []  # chunked upload: count as it comes
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _body_timeout(request: web.Request) -> float:
    holder = request.app.get(RUNTIME)
    return holder.current.config.server.body_read_timeout if holder is not None else 60.0


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonfast.dumps(payload), status=status, content_type="application/json", headers=headers)


def error_response(err: RelayError, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(err.body(), err.status, {**err.headers, **(headers or {})})
