"""Client connection limits aiohttp does not have, and HTTP-level errors that echo nothing.

aiohttp bounds idle keep-alive connections (`keepalive_timeout`) but not a client that
dribbles its headers (slowloris) or never finishes its body, nor the number of connections.
`GuardedHandler` adds, per connection:

- a header read timeout: a request's headers must be complete within `header_read_timeout`
  of its first byte (of the connection's opening, for the first request);
- a connection cap: past `max_connections` open connections, a new one gets a 503 and is
  closed at once;
- a close right after the answer when the body read timed out (httpio.read_json answers 408
  and flags the request), so a stalled upload does not also get aiohttp's lingering read;
- answers to unparsable requests (bad request line, header too large, ...) that never quote
  the offending bytes: aiohttp's own text repeats the start of the bad header, which for
  `Authorization` is the tenant's key.

The runner is aiohttp's `AppRunner` with a server whose protocol factory builds these handlers.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import ServerConfig

from .httpio import CLOSE_AFTER

log = logging.getLogger("relay")

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
         b"Connection: close\r\nContent-Length: %d\r\n\r\n")
_BUSY_BODY = jsonfast.dumps(RelayError(503, "The gateway has too many open connections; retry shortly.", type="api_error",
                                       code="too_many_connections").body())


@dataclass(frozen=True, slots=True)
class ClientLimits:
    header_timeout: float
    keepalive_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, server: ServerConfig) -> ClientLimits:
        return cls(server.header_read_timeout, server.keepalive_timeout, server.body_read_timeout, server.max_connections)


@dataclass(slots=True)
class OpenConnections:
    """Shared by every handler of one listening server."""

    count: int = 0


class GuardedHandler(RequestHandler):
    # aiohttp's handler has slots; so does this one (one per open connection).
    __slots__ = ("_limits", "_open", "_refused", "_busy", "_header_timer")

    def __init__(self, manager: web.Server, *, limits: ClientLimits, connections: OpenConnections, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._open = connections
        self._refused = False
        self._busy = False  # a request is being handled
        self._header_timer: asyncio.TimerHandle | None = None

    # --- connection cap ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._open.count >= self._limits.max_connections:
            self._refused = True
            tr = cast(asyncio.Transport, transport)
            tr.write(_BUSY % len(_BUSY_BODY) + _BUSY_BODY)
            tr.close()
            return
        self._open.count += 1
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._open.count -= 1
        self._disarm()
        super().connection_lost(exc)

    # --- header read timeout -----------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._busy:
            self._arm()  # bytes of a new request: its headers are now on the clock
        super().data_received(data)

    def _arm(self) -> None:
        if self._header_timer is None and not self._busy:
            self._header_timer = asyncio.get_running_loop().call_later(self._limits.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self._busy:
            log.debug("closing a connection whose request headers took over %ss", self._limits.header_timeout)
            self.force_close()

    # No coroutine of ours wraps aiohttp's request handling: a stream holds every frame it
    # waits in for as long as it is open. The request's start is seen where aiohttp builds
    # the request (GuardedServer's factory), its end where aiohttp finishes the response.
    def request_started(self) -> None:
        self._busy = True
        self._disarm()  # the headers are complete: a request exists

    async def finish_response(self, request: Any, resp: Any, start_time: Any) -> Any:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._busy = False
            if request.get(CLOSE_AFTER):
                self.force_close()  # after the answer was written; close() flushes it first

    # --- unparsable requests -----------------------------------------------------------
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # Name the kind of problem only: the exception's text quotes the client's bytes.
        level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
        log.log(level, "unparsable HTTP request from %s: %s", request.remote, type(exc).__name__)
        if isinstance(exc, LineTooLong):
            err = RelayError(431, "A request line or header field is too large.", code="request_header_too_large")
        else:
            err = RelayError(400, "The request is not valid HTTP/1.1.", code="malformed_http_request")
        resp = web.Response(status=err.status, body=jsonfast.dumps(err.body()), content_type="application/json")
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """aiohttp's low-level server, building `GuardedHandler`s."""

    def __init__(self, plain: web.Server, limits: ClientLimits):
        # The plain server carries the app's handler and every handler option aiohttp set.
        factory = plain.request_factory

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            cast(GuardedHandler, protocol).request_started()
            return factory(message, payload, protocol, writer, task)

        super().__init__(plain.request_handler, request_factory=make_request,
                         handler_cancellation=plain.handler_cancellation, **plain._kwargs)
        self.limits = limits
        self.open_connections = OpenConnections()

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, limits=self.limits, connections=self.open_connections, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: ClientLimits, **kwargs: Any):
        kwargs.setdefault("keepalive_timeout", limits.keepalive_timeout)
        # aiohttp reads and discards an unread body before closing (so the client can read the
        # answer); bounded here, since a stalled body would otherwise hold it for 10 s.
        kwargs.setdefault("lingering_time", min(2.0, limits.body_timeout))
        super().__init__(app, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.limits)
