"""Shared HTTP plumbing for channels that call an upstream over HTTP.

A subclass supplies the pure parts (`build_request`, `parse_response`, `stream_converter`,
`map_error`); this class owns the one I/O path, with Relay's own timeouts:
connect, first byte (response headers and the first body chunk), idle (gap between chunks)
and total, each reported as a 504 that names which one fired.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from relay_config.schema import Timeouts

from .base import Call, ChatStream, RawUpstream, StreamConverter
from .deadline import Deadline
from .errors import RelayError, redact, upstream_bad_response, upstream_redirect, upstream_timeout, upstream_unreachable
from .timers import TimerLine

log = logging.getLogger("relay")

# Upstream error bodies are read for their message only; cap what we hold in memory.
MAX_ERROR_BODY = 64 * 1024
# What every upstream request carries: Relay's own user agent rather than the HTTP client's
# (set here, once per channel, it also spares the client its per-request header merging).
BASE_HEADERS = {"content-type": "application/json", "user-agent": "relay-gateway"}


class _Unconvertible(Exception):
    """A converter that trusted a shape this upstream did not send: still the upstream's answer
    that cannot be read (a 502 in-band, not a cut connection), logged with its traceback so
    the converter can be taught the shape. Only the converter's own calls are read this way."""


def _converted(conv: StreamConverter, data: bytes | None) -> list[Any]:
    """`conv.feed(data)`, or `conv.close()` for None."""
    try:
        return conv.feed(data) if data is not None else conv.close()
    except (TypeError, AttributeError, KeyError, IndexError) as e:
        raise _Unconvertible(type(e).__name__) from e


class _ReadTimedOut(Exception):
    """Set on a body reader whose wait outlived its limit (by `_expire`)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _expire(content: aiohttp.StreamReader, what: str, _now: float) -> None:
    """A body read outlived its limit (its `TimerLine` fell due): the reader raises."""
    content.set_exception(_ReadTimedOut(what))


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


class HttpAdaptor:
    name: str
    timeouts: Timeouts
    secret: str | None = None  # the channel's upstream key, scrubbed from upstream messages

    def __init__(self, name: str, timeouts: Timeouts, session: aiohttp.ClientSession):
        self.name = name
        self.timeouts = timeouts
        self.session = session
        # aiohttp's own timer only guards connecting; the other limits are Relay's (Deadline).
        self._client_timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeouts.connect)

    # --- pure parts, supplied by the subclass -------------------------------------------
    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, body: bytes, call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def stream_converter(self, call: Call) -> StreamConverter:
        raise NotImplementedError

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> RelayError:
        raise NotImplementedError

    # --- I/O -----------------------------------------------------------------------------
    async def complete(self, call: Call) -> dict[str, Any]:
        req = self.build_request(call, stream=False)
        t = self.timeouts
        loop = asyncio.get_running_loop()
        start = loop.time()
        answered = False
        try:
            # One timer for the whole exchange: first_byte until the headers, then total.
            async with asyncio.timeout(min(t.first_byte, t.total)) as cm:
                resp = await self._post(req)
                answered = True
                cm.reschedule(start + t.total)
                try:
                    body = await resp.read()
                finally:
                    resp.release()
        except TimeoutError:
            raise upstream_timeout(self.name, "total" if answered or loop.time() - start >= t.total else "first_byte") from None
        except aiohttp.ClientError as e:
            raise upstream_unreachable(self.name, f"connection lost while reading the answer ({type(e).__name__})") from None
        return self.parse_response(body, call)

    async def open_stream(self, call: Call) -> ChatStream:
        resp, deadline = await self._open(self.build_request(call, stream=True))
        return self._relay_stream(resp, self.stream_converter(call), deadline)

    async def _open(self, req: UpstreamRequest) -> tuple[aiohttp.ClientResponse, Deadline]:
        """Sends a request whose body will be read chunk by chunk, within first_byte/total."""
        deadline = Deadline(self.timeouts)
        left, what = deadline.next_wait()
        return await self._within(self._post(req), left, what), deadline

    async def _post(self, req: UpstreamRequest) -> aiohttp.ClientResponse:
        """Sends the request; an HTTP error status comes back as the adaptor's RelayError."""
        try:
            # Never follow a redirect: it would carry the channel's key, headers and the
            # prompt to whatever origin the Location names.
            resp = await self.session.post(req.url, data=req.body, headers=req.headers, timeout=self._client_timeout,
                                           allow_redirects=False)
        except aiohttp.ClientConnectorError as e:
            raise upstream_unreachable(self.name, f"cannot connect ({e.os_error.strerror or type(e.os_error).__name__})") from None
        except aiohttp.ServerTimeoutError:
            raise upstream_timeout(self.name, "connect") from None
        except aiohttp.ClientError as e:
            raise upstream_unreachable(self.name, type(e).__name__) from None
        if 300 <= resp.status < 400:
            resp.release()
            raise upstream_redirect(self.name, resp.status)
        if resp.status >= 400:
            try:
                body = await resp.content.read(MAX_ERROR_BODY)
            except aiohttp.ClientError:
                body = b""
            finally:
                resp.release()
            raise redact(self.map_error(resp.status, dict(resp.headers), body), self.secret)
        return resp

    async def _within(self, aw: Any, seconds: float, what: str) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await aw
        except TimeoutError:
            raise upstream_timeout(self.name, what) from None

    # The two body readers below wait on the StreamReader in their own frame, no helper
    # coroutine in between: every frame a stream waits in stays allocated as long as the
    # stream is open (thousands of them on slow upstreams). Bytes already received are taken
    # without a wait; a wait is timed by a `TimerLine` (a timer shared with the other streams),
    # and one that expired leaves `_ReadTimedOut` in the reader (read_nowait raises it too).

    def _lost(self, e: aiohttp.ClientError) -> RelayError:
        return upstream_unreachable(self.name, f"connection lost mid-stream ({type(e).__name__})")

    async def _relay_stream(
        self, resp: aiohttp.ClientResponse, conv: StreamConverter, deadline: Deadline
    ) -> ChatStream:
        content, finished = resp.content, False
        try:
            while True:
                if not (data := content.read_nowait()):
                    if content.at_eof():
                        break
                    left, what = deadline.next_wait()
                    waits = TimerLine.of(_expire, left)
                    waits.set(content, what)
                    try:
                        data = await content.readany()
                    finally:
                        waits.cancel(content)
                    if not data:
                        break
                deadline.got_first = True
                if batch := _converted(conv, data):
                    yield batch
            if batch := _converted(conv, None):
                yield batch
            finished = True
        except RelayError as e:
            yield [e]
        except _ReadTimedOut as e:
            yield [upstream_timeout(self.name, e.what)]
        except aiohttp.ClientError as e:
            yield [self._lost(e)]
        except ValueError as e:  # a converter met something it cannot read
            yield [upstream_bad_response(self.name, str(e))]
        except _Unconvertible as e:
            log.warning("channel %s: its stream could not be converted", self.name, exc_info=e.__cause__)
            yield [upstream_bad_response(self.name, f"a stream event of an unexpected shape ({e})")]
        finally:
            # A stream read to its end may go back to the pool; any other is cut off, which
            # also tells the upstream to stop generating.
            resp.release() if finished else resp.close()

    async def raw(self, req: UpstreamRequest) -> RawUpstream:
        """Sends `req` and relays the answer's bytes untouched (same timeouts as streams)."""
        resp, deadline = await self._open(req)

        def failed(e: RelayError) -> None:
            upstream.failure = e

        upstream = RawUpstream(resp.status, resp.headers.get("Content-Type", "application/json"), self._raw_chunks(resp, deadline, failed))
        return upstream

    async def _raw_chunks(self, resp: aiohttp.ClientResponse, deadline: Deadline,
                          failed: Callable[[RelayError], None]) -> AsyncGenerator[bytes, None]:
        content, finished = resp.content, False
        try:
            while True:
                if not (data := content.read_nowait()):
                    if content.at_eof():
                        break
                    left, what = deadline.next_wait()
                    waits = TimerLine.of(_expire, left)
                    waits.set(content, what)
                    try:
                        data = await content.readany()
                    finally:
                        waits.cancel(content)
                    if not data:
                        break
                deadline.got_first = True
                yield data
            finished = True
        except (_ReadTimedOut, aiohttp.ClientError) as e:
            # Bytes already went out as they came: the relay's tap says so in the client's
            # protocol where it can (RawUpstream.failure), or the connection is cut.
            err = upstream_timeout(self.name, e.what) if isinstance(e, _ReadTimedOut) else self._lost(e)
            log.warning("upstream %s failed during a relayed body: %s", self.name, err.message)
            failed(err)
        finally:
            resp.release() if finished else resp.close()
