"""Getting an answer: try the candidate channels in order until one accepts the request.

Failover happens only before anything reached the client: on connect errors, timeouts before
the first byte, 429 and 5xx (Anthropic 529 included). A client error (400, 404, 413, ...) is
returned at once. Each outcome feeds the channel's circuit breaker.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from relay_adaptors.base import Call, ChatStream
from relay_adaptors.errors import RelayError
from relay_config.schema import RouterConfig

from .breaker import Breakers
from .metrics import Metrics, reason_of
from .router import Candidate

log = logging.getLogger("relay")


@dataclass(slots=True)
class Health:
    """What dispatch reports to: the breakers and the metrics."""

    router: RouterConfig
    breakers: Breakers
    metrics: Metrics

    def attempt_over(self, channel: str, started: float, error: RelayError | None) -> None:
        m = self.metrics
        m.child(m.inflight, channel).dec()
        m.child(m.upstream, channel).observe(time.monotonic() - started)
        if error is not None:
            m.child(m.upstream_errors, channel, reason_of(error.status, error.code)).inc()


@dataclass(slots=True)
class Answer:
    candidate: Candidate
    call: Call
    result: Any  # a chat completion dict, or a ChatStream when streaming
    attempts: int
    health: Health
    started: float  # monotonic start of the attempt that answered
    settled: bool = False

    @property
    def stream(self) -> ChatStream:
        return self.result

    def headers(self) -> dict[str, str]:
        h = {"x-relay-channel": self.candidate.channel.name, "x-relay-attempts": str(self.attempts)}
        if self.call.ignored_params:
            h["x-relay-ignored-params"] = ",".join(sorted(set(self.call.ignored_params)))
        return h

    def settle(self, error: RelayError | None, finished: bool) -> None:
        """Reports how a stream went to the channel's breaker (once)."""
        if self.settled:
            return
        self.settled = True
        name = self.candidate.channel.name
        breakers = self.health.breakers
        if error is not None and error.retryable:
            breakers.failure(name, retry_after_seconds(error))
        elif finished or error is not None:
            breakers.success(name)
        else:
            breakers.release(name)
        self.health.attempt_over(name, self.started, error)


def retry_after_seconds(err: RelayError) -> float | None:
    value = err.headers.get("retry-after") or err.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    """Short, jittered: 25-75 ms, then 50-150 ms, capped."""
    return min(0.05 * 2 ** (attempt - 1), 0.4) * random.uniform(0.5, 1.5)


async def dispatch(
    candidates: list[Candidate],
    build: Callable[[Candidate], dict[str, Any]],
    request_id: str,
    stream: bool,
    health: Health,
) -> Answer:
    router, breakers, metrics = health.router, health.breakers, health.metrics
    failed: list[tuple[str, str]] = []
    last_error: RelayError | None = None
    cooling: list[str] = []
    attempts = 0
    for candidate in candidates:
        if attempts >= router.max_attempts:
            break
        name = candidate.channel.name
        body = build(candidate)  # a request this channel cannot take is the client's to fix
        if not breakers.allow(name):
            cooling.append(name)
            continue
        if attempts:
            metrics.failovers.labels(candidate.model, failed[-1][0]).inc()
            await asyncio.sleep(backoff(attempts))
        attempts += 1
        call = Call(body, candidate.upstream_model, request_id, {"x-request-id": request_id})
        started = time.monotonic()
        metrics.child(metrics.inflight, name).inc()
        try:
            result = await (candidate.adaptor.open_stream(call) if stream else candidate.adaptor.complete(call))
        except RelayError as e:
            health.attempt_over(name, started, e if e.retryable else None)
            if not e.retryable:
                breakers.success(name)  # the upstream answered; the request was at fault
                e.headers.setdefault("x-relay-channel", name)
                e.headers["x-relay-attempts"] = str(attempts)
                raise
            breakers.failure(name, retry_after_seconds(e))
            failed.append((name, e.code or str(e.status)))
            log.warning("request %s: channel %s failed (%s %s); %s", request_id, name, e.status,
                        e.code, "trying the next one" if attempts < router.max_attempts else "no attempts left")
            last_error = e
            continue
        except BaseException:
            breakers.release(name)
            health.attempt_over(name, started, None)
            raise
        answer = Answer(candidate, call, result, attempts, health, started)
        if not stream:
            answer.settle(None, finished=True)
        return answer
    if last_error is None:
        wait = min((breakers.retry_after(n) for n in cooling), default=1.0)
        raise RelayError(
            503,
            "Every channel serving this model is cooling down after repeated failures; retry later.",
            type="api_error", code="channels_unavailable",
            headers={"retry-after": str(max(1, round(wait)))},
        )
    last_error.headers["x-relay-attempts"] = str(attempts)
    last_error.headers["x-relay-channel"] = failed[-1][0]
    raise last_error
