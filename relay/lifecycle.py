"""One model call, from admission to the ledger: the only thing the handlers talk to.

    async with ModelCall(request, rt, tenant, "chat") as call:
        await call.admit(model, messages, max_out, stream)    # limits: 429 / 503 before any upstream call
        answer = await call.dispatch(candidates, plan, stream)
        return call.json(payload, usage, headers)             # or:
        return await call.stream(answer, write, headers)      # SSE through a writer, or:
        return await call.relay(answer, make_tap, headers)    # the upstream's own bytes (passthrough)

It owns the end of the answer whatever ends it (last byte, upstream failure, client gone):
the upstream is closed, the breaker gets its verdict, usage is settled against the limits,
the concurrency slot is freed and exactly one ledger row is written. That closing work runs
in tasks of the app's own, shielded, so a cancellation cannot cut it short; the app waits for
them at shutdown.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web

from relay_adaptors.kernel.base import CallReport
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import KEEPALIVE
from relay_adaptors.kernel.tokens import estimate_prompt
from relay_config.schema import TenantConfig

from . import limits
from .appkeys import ACCOUNTED, BACKGROUND, BREAKERS, METRICS, REQUEST_ID, STORE
from .dispatch import Answer, Attempt, Upstreams, dispatch
from .httpio import json_response
from .leases import LeaseKeeper
from .logs import access, log_request
from .metrics import Metrics
from .outcome import Sink, StreamOutcome, charge
from .router import Candidate, model_not_found
from .runtime import Runtime
from .sse_out import REQUEST_ID_HEADER, SSE_HEADERS, KeepaliveWriter
from .store import Admission, AdmitRequest, Store, StoreError, UsageRecord
from .vkeys import limits as key_limits
from .vkeys.appkeys import KEYSTORE, VIRTUAL_KEY

log = logging.getLogger("relay")
CLIENT_CLOSED = 499

Writer = Callable[[KeepaliveWriter, StreamOutcome], Awaitable[None]]


class Tap(Protocol):
    """Watches a passthrough's bytes (sans-IO): returns what to relay, writes what it learns
    (usage, text produced) into the outcome as the bytes pass."""

    def feed(self, data: bytes) -> bytes: ...

    def end(self, cut: bool = False) -> bytes:
        """What is left to relay once the upstream finished; `cut`: the answer stopped short
        (the client went away), so nothing is added, only what was seen is kept."""
        ...


TapFactory = Callable[[bool, StreamOutcome], Tap]  # (the answer is an event stream, where to write)
Flush = Callable[[], Awaitable[bytes]]


# A random per-process prefix and a counter: unique across instances, no syscall per request.
_LEASE_PREFIX = "lease_" + os.urandom(8).hex() + "_"
_LEASE_COUNTER = itertools.count(1)
_NO_COUNTERS: frozenset[str] = frozenset()  # shared: no empty set held per open call


def new_lease_id() -> str:
    """A concurrency lease id of Relay's own: never anything the client chose."""
    return f"{_LEASE_PREFIX}{next(_LEASE_COUNTER):x}"


async def _admitted(request: web.Request, rt: Runtime, tenant: TenantConfig, plan: limits.Plan,
                    key_counters: Collection[str]) -> Admission | None:
    """The store's admission of `plan`, or the 429 / 503 that refuses it; None when the store
    is unavailable and `store.on_error` is fail_open."""
    app = request.app
    metrics: Metrics = app[METRICS]
    try:
        adm = await app[STORE].admit(plan.req, time.time())
    except StoreError as e:
        metrics.store_errors.labels("admit").inc()
        if rt.config.store.on_error == "fail_open":
            log.error("usage store unavailable, admitting request %s without limits: %s", request[REQUEST_ID], e)
            return None
        log.error("usage store unavailable, refusing request %s: %s", request[REQUEST_ID], e)
        raise RelayError(503, "The gateway's usage store is unavailable; retry shortly.", type="api_error",
                         code="store_unavailable", headers={"retry-after": "1"}) from None
    if not adm.ok:
        by_key = adm.failed_key in key_counters
        if adm.failed == "budget" and not by_key:
            metrics.budget_left.labels(tenant.name).set(0)
        metrics.rate_limited.labels(tenant.name, adm.failed or "requests").inc()
        raise key_limits.rejection(adm) if by_key else limits.rejection(adm, tenant.name, plan)
    return adm


async def count_one_request(request: web.Request, rt: Runtime, tenant: TenantConfig, model: str) -> None:
    """Charges a call that reaches an upstream without a model answer (a token count) one
    request of the tenant's and the virtual key's request rates: the same 429 as a model
    call once they are spent, and no tokens, slot or budget taken."""
    now = time.time()
    plan = limits.plan(tenant, model, lambda: 0, None, new_lease_id(), now)
    key = request.get(VIRTUAL_KEY)
    key_counters = key_limits.extend(plan, key, lambda: 0, None, now) if key is not None else set()
    plan.req = AdmitRequest(rates=[r for r in plan.req.rates if r.kind == "requests"], lease=plan.req.lease)
    if not plan.req.empty:
        await _admitted(request, rt, tenant, plan, key_counters)


class _Passthrough(web.StreamResponse):
    """A relayed answer's status line and headers leave with its first bytes, in one write:
    the upstream has already answered, and its first frame is seldom far behind."""

    _send_headers_immediately = False  # aiohttp's own switch (its Response sets it too)


class ModelCall:
    def __init__(self, request: web.Request, rt: Runtime, tenant: TenantConfig, api: str):
        app = request.app
        self.request = request
        self.rt = rt
        self.tenant = tenant
        self.api = api
        self.request_id = request[REQUEST_ID]
        self.store: Store = app[STORE]
        self.metrics: Metrics = app[METRICS]
        self.tasks: set[asyncio.Task[Any]] = app[BACKGROUND]
        self.upstreams = Upstreams(rt.config.router, app[BREAKERS], self.metrics)
        self.started = time.monotonic()
        self.lease = new_lease_id()
        self.model = ""  # the canonical model (after alias resolution): limits and ledger key on it
        self.channel = ""
        self.attempts = 0
        self.stream_requested = False
        self.status = 200
        self.usage: dict[str, Any] | None = None  # chat-shaped usage of a non-streamed answer
        self.outcome: StreamOutcome | None = None
        self.report = CallReport()
        self.messages: list[dict[str, Any]] = []
        self.plan: limits.Plan | None = None  # set once the store admitted it: counters to settle
        self.headers: dict[str, str] = {}  # the tenant's rate-limit headers
        self.total_tokens = 0
        self.key = request.get(VIRTUAL_KEY)  # the virtual key that authenticated the call, if one did
        self.key_counters: frozenset[str] | set[str] = _NO_COUNTERS
        request[ACCOUNTED] = True

    async def __aenter__(self) -> ModelCall:
        return self

    # --- admission -------------------------------------------------------------------------
    async def admit(self, model: str, messages: list[dict[str, Any]], max_out: int | None, stream: bool) -> None:
        """Checks and takes the tenant's limits for a call of `model` (canonical name), and the
        virtual key's own when one authenticated the call."""
        if self.key is not None and not self.key.may_use(model):
            raise model_not_found(model)  # outside the key's allowlist: as if unknown
        self.model, self.messages, self.stream_requested = model, messages, stream
        now = time.time()  # one reading: the tenant's and the key's budget periods must agree
        plan = limits.plan(self.tenant, model, lambda: self.estimate_in, max_out, self.lease, now)
        if self.key is not None:
            self.key_counters = key_limits.extend(plan, self.key, lambda: self.estimate_in, max_out, now)
        if plan.req.empty:
            return  # an unlimited tenant: nothing to check
        adm = await _admitted(self.request, self.rt, self.tenant, plan, self.key_counters)
        if adm is None:
            return  # the store is down and fails open
        self.plan = plan
        self.leases = LeaseKeeper(self.store, plan.req.concurrency, plan.req.lease, plan.req.lease_ttl, on_error=self._renew_failed)
        self.leases.start()
        self.headers = limits.headers(adm)
        if "budget" in adm.status and not any(k.startswith("budget:") for k in self.key_counters):
            limit, remaining, _ = adm.status["budget"]  # the tenant's (a key's budget is no metric)
            self.metrics.budget_left.labels(self.tenant.name).set(remaining / limit)

    @functools.cached_property
    def estimate_in(self) -> int:
        return estimate_prompt(self.messages)

    # --- the upstream ----------------------------------------------------------------------
    async def dispatch(self, candidates: list[Candidate], plan: Callable[[Candidate], Attempt], stream: bool) -> Answer:
        answer = await dispatch(candidates, plan, self.request_id, stream, self.upstreams, self.tenant.name)
        self.channel, self.attempts, self.report = answer.candidate.channel.name, answer.attempts, answer.call.report
        return answer

    def json(self, payload: dict[str, Any], usage: Any, headers: dict[str, str]) -> web.Response:
        """A whole answer; `usage` is the chat-shaped usage it carried."""
        self.usage = usage if isinstance(usage, dict) else None
        return json_response(payload, headers={**headers, **self.headers})

    async def stream(self, answer: Answer, write: Writer, headers: dict[str, str], ping: bytes = KEEPALIVE) -> web.StreamResponse:
        """Streams `answer` to the client through `write`, with `ping` while the upstream is silent."""
        assert answer.stream is not None
        outcome = self.outcome = StreamOutcome()
        writer: KeepaliveWriter | None = None
        try:
            resp = web.StreamResponse(headers={**SSE_HEADERS, **headers, **self.headers, REQUEST_ID_HEADER: self.request_id})
            del headers  # copied into the response: not held by this frame for the whole stream
            await resp.prepare(self.request)
            writer = KeepaliveWriter(resp, self.rt.config.server.sse_keepalive, ping)
            await write(writer, outcome)
            await writer.stop()
            await resp.write_eof()
            return resp
        finally:
            # Closing the upstream here also covers a client that went away (the handler is
            # cancelled): the upstream connection or process is cut at once.
            await self._shielded(self._close(answer, writer, outcome))

    async def _close(self, answer: Answer, writer: KeepaliveWriter | None, outcome: StreamOutcome) -> None:
        try:
            if writer is not None:
                await writer.stop()
            await answer.close()
        finally:
            answer.settle(outcome.error, outcome.finished)

    async def relay(self, answer: Answer, make_tap: TapFactory, headers: dict[str, str],
                    flush: Flush | None = None, ping: bytes | None = None) -> web.StreamResponse:
        """Relays a passthrough answer's bytes as they come; its tap reads usage on the side.
        `flush`, after each read, writes what the tap held back until it had done its work
        (a response stored before its terminal event goes out). `ping` fills an event
        stream's silences, for taps that relay whole frames only."""
        upstream = answer.raw
        assert upstream is not None
        outcome = self.outcome = StreamOutcome()
        streaming = upstream.content_type.startswith("text/event-stream")
        tap = make_tap(streaming, outcome)
        writer: KeepaliveWriter | None = None
        try:
            resp = _Passthrough(status=upstream.status, headers={
                "Content-Type": upstream.content_type, **upstream.headers, **headers, **self.headers,
                REQUEST_ID_HEADER: self.request_id,
                **({k: v for k, v in SSE_HEADERS.items() if k != "Content-Type"} if streaming else {})})
            await resp.prepare(self.request)
            sink: Sink = resp
            if ping is not None and streaming:
                sink = writer = KeepaliveWriter(resp, self.rt.config.server.sse_keepalive, ping)
            await _pump(upstream.chunks, tap, sink, flush)
            if writer is not None:
                await writer.stop()
            await resp.write_eof()
            outcome.finished = True
            return resp
        finally:
            tap.end(cut=True)  # before any wait: what was seen is kept even if this task is cancelled
            await self._shielded(self._close(answer, writer, outcome))

    # --- answers no client connection reads (background responses) -------------------------
    async def pipe(self, answer: Answer, make_tap: TapFactory, sink: Sink, flush: Flush | None = None) -> None:
        """`relay`, into `sink` instead of a client connection."""
        upstream = answer.raw
        assert upstream is not None
        outcome = self.outcome = StreamOutcome()
        tap = make_tap(upstream.content_type.startswith("text/event-stream"), outcome)
        try:
            await _pump(upstream.chunks, tap, sink, flush)
            outcome.finished = True
        finally:
            tap.end(cut=True)
            await self._shielded(self._close(answer, None, outcome))

    async def feed(self, answer: Answer, write: Callable[[Sink, StreamOutcome], Awaitable[None]], sink: Sink) -> None:
        """`stream`, into `sink` instead of a client connection."""
        assert answer.stream is not None
        outcome = self.outcome = StreamOutcome()
        try:
            await write(sink, outcome)
        finally:
            await self._shielded(self._close(answer, None, outcome))

    async def _shielded(self, work: Awaitable[None]) -> None:
        """Runs `work` to the end even if the caller is cancelled while waiting for it."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await asyncio.shield(task)

    # --- the end ---------------------------------------------------------------------------
    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        out = self.outcome
        if isinstance(exc, RelayError):
            self.status = exc.status
            self.channel = self.channel or exc.headers.get("x-relay-channel", "")
        elif out is not None and out.error is not None:
            self.status = out.error.status  # reported in-band
        elif out is not None and out.finished:
            self.status = 200  # the whole answer went out, even if the client hung up right after
        elif exc is not None and not isinstance(exc, (asyncio.CancelledError, ConnectionError)):
            self.status = 500
        elif exc is not None or out is not None:
            self.status = CLIENT_CLOSED  # cancelled, or an answer that stopped short
        if not self.model:
            return  # rejected before a model was named: nothing to account
        self._record()
        if self.plan is None:
            return  # nothing held in the store
        await self._shielded(self._release())

    def _record(self) -> None:
        """The ledger row, metrics and access line: no waiting, so nothing can cut it short."""
        # A call cut short after the upstream had the prompt still pays for the prompt.
        reached_upstream = bool(self.channel) and self.status == CLIENT_CLOSED
        c = charge(self.usage, self.outcome, self.status, reached_upstream, lambda: self.estimate_in)
        ttft = None
        if self.outcome is not None and self.outcome.first_chunk_at is not None:
            ttft = (self.outcome.first_chunk_at - self.started) * 1000
        rec = UsageRecord(time.time(), self.request_id, self.tenant.name, self.model, self.channel, self.api,
                          self.stream_requested, self.status, c.input, c.cached, c.output, c.reasoning,
                          (time.monotonic() - self.started) * 1000, ttft, c.estimated, self.report.cost_usd,
                          self.key.id if self.key is not None else None)
        self.store.record(rec)
        if rec.key_id is not None:
            self.request.app[KEYSTORE].record(rec)  # the per-key aggregates
        self._observe(rec)
        self.total_tokens = c.total

    async def _release(self) -> None:
        """Settles token counters and budgets (charged the estimate at admission) with the
        real usage, and frees the slot: one store round trip."""
        assert self.plan is not None
        await self.leases.stop()
        plan, total = self.plan, self.total_tokens
        rates = [(r, float(total - plan.estimate)) for r in plan.token_rates]
        budgets = [(b, total - plan.reserve) for b in plan.req.budgets]
        try:
            await self.store.settle_and_release(rates, budgets, plan.req.concurrency, plan.req.lease, time.time())
        except StoreError as e:  # the settlement is lost; the release is retried by the store
            if rates or budgets:
                self.metrics.store_errors.labels("settle").inc()
                log.error("could not settle usage of request %s: %s", self.request_id, e)
            if plan.req.concurrency:
                self.metrics.store_errors.labels("release").inc()
                log.error("could not release the concurrency slot of request %s (retried in the background): %s", self.request_id, e)

    def _renew_failed(self, e: StoreError) -> None:
        self.metrics.store_errors.labels("renew").inc()
        log.warning("could not renew the concurrency lease of request %s (retried): %s", self.request_id, e)

    def _observe(self, rec: UsageRecord) -> None:
        m, channel = self.metrics, rec.channel or "none"
        m.child(m.requests, rec.tenant, rec.model, channel, rec.api, str(rec.status)).inc()
        m.child(m.duration, rec.tenant, rec.model, channel, rec.api).observe(rec.duration_ms / 1000)
        if rec.ttft_ms is not None:
            m.child(m.ttft, rec.model, channel, rec.api).observe(rec.ttft_ms / 1000)
        for kind, n in (("input", rec.input_tokens), ("cached", rec.cached_tokens), ("output", rec.output_tokens),
                        ("reasoning", rec.reasoning_tokens)):
            if n:
                m.child(m.tokens, rec.tenant, rec.model, channel, kind).inc(n)
        if self.rt.config.server.access_log and access.isEnabledFor(logging.INFO):
            log_request({
                "request_id": rec.request_id, "tenant": rec.tenant, "model": rec.model, "channel": rec.channel,
                "api": rec.api, "stream": rec.stream, "status": rec.status, "duration_ms": round(rec.duration_ms, 2),
                "ttft_ms": round(rec.ttft_ms, 2) if rec.ttft_ms is not None else None,
                "input_tokens": rec.input_tokens, "output_tokens": rec.output_tokens, "cached_tokens": rec.cached_tokens,
                "reasoning_tokens": rec.reasoning_tokens, "estimated": rec.estimated, "cost_usd": rec.cost_usd,
                "attempts": self.attempts, "client": self.request.remote,
            })


async def _pump(chunks: AsyncIterator[bytes], tap: Tap, sink: Sink, flush: Flush | None) -> None:
    """A passthrough's bytes through its tap into `sink`; after each read, `flush` writes what
    the tap held back until its work was done."""
    async for data in chunks:
        if out := tap.feed(data):
            await sink.write(out)
        if flush is not None and (held := await flush()):
            await sink.write(held)
    tail = tap.end()
    if flush is not None:
        tail += await flush()
    if tail:
        await sink.write(tail)
