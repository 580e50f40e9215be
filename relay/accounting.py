"""One model call from admission to the ledger.

    async with Accounting(app, rt, tenant, api, request_id) as acct:
        await acct.admit(model, estimate)      # limits: 429 / 503 before any upstream call
        ... dispatch, respond; acct.channel / acct.usage / acct.outcome as they become known
    # on exit, even when cancelled: usage settled, concurrency released, one ledger row

The closing work runs in a task of its own, so a client that leaves cannot cut it short.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from types import TracebackType
from typing import Any

from aiohttp import web

from relay_adaptors.base import CallReport
from relay_adaptors.errors import RelayError
from relay_adaptors.tokens import estimate_prompt
from relay_config.schema import TenantConfig

from . import limits
from .chat_stream import StreamOutcome
from .logs import access, log_request
from .metrics import Metrics
from .runtime import Runtime
from .store import Store, StoreError, UsageRecord

log = logging.getLogger("relay")
CLIENT_CLOSED = 499


class Accounting:
    def __init__(self, store: Store, rt: Runtime, tenant: TenantConfig, api: str, request_id: str,
                 tasks: set[asyncio.Task[Any]], metrics: Metrics, client: str | None):
        self.store = store
        self.metrics = metrics
        self.client = client
        self.attempts = 0
        self.rt = rt
        self.tenant = tenant
        self.api = api
        self.request_id = request_id
        self.tasks = tasks
        self.started = time.monotonic()
        self.model = ""
        self.channel = ""
        self.stream = False
        self.status = 200
        self.usage: dict[str, Any] | None = None  # chat usage, when the upstream reported it
        self.outcome: StreamOutcome | None = None
        self.messages: list[dict[str, Any]] = []
        self.plan: limits.Plan | None = None
        self.admitted = False
        self.headers: dict[str, str] = {}
        self.total_tokens = 0
        self.report = CallReport()  # what the adaptor learned (e.g. the CLI's cost)

    async def __aenter__(self) -> Accounting:
        return self

    async def admit(self, model: str, messages: list[dict[str, Any]], max_out: int | None) -> None:
        self.model = model
        self.messages = messages
        plan = limits.plan(self.tenant, model, lambda: self.estimate_in + (max_out or 0), self.request_id, time.time())
        if plan.req.empty:
            return  # an unlimited tenant: nothing to check
        self.plan = plan
        try:
            adm = await self.store.admit(plan.req, time.time())
        except StoreError as e:
            self.metrics.store_errors.labels("admit").inc()
            if self.rt.config.store.on_error == "fail_open":
                log.error("usage store unavailable, admitting request %s without limits: %s", self.request_id, e)
                return
            log.error("usage store unavailable, refusing request %s: %s", self.request_id, e)
            raise RelayError(503, "The gateway's usage store is unavailable; retry shortly.", type="api_error",
                             code="store_unavailable", headers={"retry-after": "1"}) from None
        if not adm.ok:
            if adm.failed == "budget":
                self.metrics.budget_left.labels(self.tenant.name).set(0)
            self.metrics.rate_limited.labels(self.tenant.name, adm.failed or "requests").inc()
            raise limits.rejection(adm, self.tenant.name, plan)
        self.admitted = True
        self.headers = limits.headers(adm)
        if "budget" in adm.status:
            limit, remaining, _ = adm.status["budget"]
            self.metrics.budget_left.labels(self.tenant.name).set(remaining / limit)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        out = self.outcome
        if isinstance(exc, RelayError):
            self.status = exc.status
            self.channel = self.channel or exc.headers.get("x-relay-channel", "")
        elif out is not None and out.error is not None:
            self.status = out.error.status  # reported in-band
        elif out is not None and out.finished:
            self.status = 200  # the whole answer went out, even if the client hung up right after
        elif exc is not None and not isinstance(exc, asyncio.CancelledError):
            self.status = 500
        elif exc is not None or out is not None:
            self.status = CLIENT_CLOSED  # cancelled, or a stream that stopped short
        if not self.model:
            return  # rejected before a model was named: nothing to account
        self._record()
        if self.plan is None or not self.admitted:
            return  # nothing held in the store: done without a task
        task = asyncio.get_running_loop().create_task(self._release())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await asyncio.shield(task)  # if this request is cancelled meanwhile, the task still finishes

    @functools.cached_property
    def estimate_in(self) -> int:
        return estimate_prompt(self.messages)

    def _tokens(self) -> tuple[int, int, int, int, bool]:
        """(input, cached, output, reasoning, estimated): the upstream's numbers when it
        reported them, else Relay's estimate for whatever was produced or started."""
        u = self.usage or (self.outcome.usage if self.outcome else None)
        if u:
            return (int(u.get("prompt_tokens") or 0), int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                    int(u.get("completion_tokens") or 0),
                    int((u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0), False)
        produced = self.outcome is not None and self.outcome.first_chunk_at is not None
        started = bool(self.channel) and self.status == CLIENT_CLOSED  # the upstream already had the prompt
        if not (self.status < 400 or produced or started):
            return 0, 0, 0, 0, False  # nothing reached or came from an upstream: nothing to charge
        chars = self.outcome.output_chars if self.outcome else 0
        return self.estimate_in, 0, (chars + 3) // 4, 0, True

    def _record(self) -> None:
        """The ledger row, metrics and access line: no waiting, so nothing can cut it short."""
        inp, cached, out, reasoning, estimated = self._tokens()
        ttft = None
        if self.outcome is not None and self.outcome.first_chunk_at is not None:
            ttft = (self.outcome.first_chunk_at - self.started) * 1000
        rec = UsageRecord(time.time(), self.request_id, self.tenant.name, self.model, self.channel, self.api, self.stream,
                          self.status, inp, cached, out, reasoning, (time.monotonic() - self.started) * 1000, ttft, estimated,
                          self.report.cost_usd)
        self.store.record(rec)
        self._observe(rec)
        self.total_tokens = inp + out

    async def _release(self) -> None:
        """Settles token counters and budgets with the real usage, and frees the slot."""
        assert self.plan is not None
        now, total = time.time(), self.total_tokens
        try:
            await self.store.settle([(r, total - self.plan.estimate) for r in self.plan.token_rates],
                                    [(b, total) for b in self.plan.req.budgets], now)
        except StoreError as e:
            self.metrics.store_errors.labels("settle").inc()
            log.error("could not settle usage of request %s: %s", self.request_id, e)
        try:
            await self.store.release(self.plan.req.concurrency, self.plan.req.lease)
        except StoreError as e:
            self.metrics.store_errors.labels("release").inc()
            log.error("could not release the concurrency slot of request %s (it expires by itself): %s", self.request_id, e)

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
                "attempts": self.attempts,
                "client": self.client,
            })


def accounting(request: web.Request, rt: Runtime, tenant: TenantConfig, api: str) -> Accounting:
    from .keys import ACCOUNTED, BACKGROUND, METRICS, REQUEST_ID, STORE

    request[ACCOUNTED] = True
    return Accounting(request.app[STORE], rt, tenant, api, request[REQUEST_ID], request.app[BACKGROUND],
                      request.app[METRICS], request.remote)
