"""Getting an answer: try the candidate channels in order until one accepts the request.

Every path goes through here: chat, bridged Responses and Messages, and same-protocol
passthroughs (native Responses / Messages), so failover, breakers and upstream metrics are
the same for all. Failover happens only before anything reached the client: on connect
errors, timeouts before the first byte, 429 and 5xx (Anthropic 529 included). A client error
(400, 404, 413, ...) is returned at once.

Relay never refuses without asking an upstream: channels that are cooling down (breaker open,
or backing off after an upstream 429) are skipped while another candidate is left, and asked
anyway, soonest-ready first, when none is (panic mode). An upstream 429 is backpressure: it
moves the request on and keeps that channel aside for its retry-after, but never counts
toward the breaker.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from multidict import istr

from relay_adaptors.kernel.base import Call, CallReport, ChatStream, NativeChat, NativeMessages, NativeResponses, RawUpstream, Resume
from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import RouterConfig

from .breaker import Breakers
from .metrics import Metrics, reason_of
from .router import Candidate

log = logging.getLogger("relay")

# istr, as aiohttp's own header names are: a response's multidict otherwise makes (and
# keeps, while a stream is open) an istr of each name it sends.
_CHANNEL, _ATTEMPTS, _IGNORED, _UPSTREAM_MODEL = (istr(n) for n in (
    "x-relay-channel", "x-relay-attempts", "x-relay-ignored-params", "x-relay-upstream-model"))

# Which of an adaptor's paths takes the request: the canonical chat path, or a
# same-protocol passthrough the adaptor declared in its capabilities.
Path = Literal["chat", "native_chat", "native_responses", "native_messages"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one candidate is asked."""

    body: dict[str, Any]
    path: Path = "chat"
    headers: dict[str, str] | None = None  # client headers the upstream should see (same-protocol passthrough)
    resume: Resume | None = None  # an upstream session to continue (channels that resume sessions)


@dataclass(slots=True)
class Upstreams:
    """What dispatch reports to: the routing config, the breakers and the metrics."""

    router: RouterConfig
    breakers: Breakers
    metrics: Metrics

    def attempt_over(self, channel: str, started: float, error: RelayError | None) -> None:
        m = self.metrics
        m.child(m.inflight, channel).dec()
        m.child(m.upstream, channel).observe(time.monotonic() - started)
        if error is not None:
            m.child(m.upstream_errors, channel, reason_of(error.status, error.code)).inc()

    def verdict(self, channel: str, error: RelayError | None, finished: bool) -> None:
        """What one attempt says about the channel's health."""
        if error is None:
            (self.breakers.success if finished else self.breakers.release)(channel)
        elif error.local:
            self.breakers.release(channel)  # Relay's own refusal: nothing learned of the upstream
        elif error.status == 429:
            self.breakers.throttled(channel, retry_after_seconds(error))
        elif error.retryable:
            self.breakers.failure(channel, f"{error.status} {error.code or ''}".strip())
        else:
            self.breakers.success(channel)  # the upstream answered; the request was at fault


@dataclass(slots=True)
class Answer:
    """The attempt that answered. Exactly one of completion / stream / raw is set."""

    candidate: Candidate
    call: Call
    path: Path
    attempts: int
    upstreams: Upstreams
    started: float  # monotonic start of the attempt that answered
    completion: dict[str, Any] | None = None
    stream: ChatStream | None = None
    raw: RawUpstream | None = None
    settled: bool = False

    @property
    def report(self) -> CallReport:
        return self.call.report

    def headers(self) -> dict[str, str]:
        h: dict[str, str] = {_CHANNEL: self.candidate.channel.name, _ATTEMPTS: str(self.attempts)}
        if self.call.ignored_params:
            h[_IGNORED] = ",".join(sorted(set(self.call.ignored_params)))
        # For operators: the model name the upstream was asked for (answers name the public one).
        h[_UPSTREAM_MODEL] = self.call.report.upstream_model or self.candidate.upstream_model
        return h

    async def close(self) -> None:
        """Closes the upstream of a streamed or relayed answer (connection cut, process ended)."""
        if self.stream is not None:
            await self.stream.aclose()
        elif self.raw is not None:
            await self.raw.chunks.aclose()

    def settle(self, error: RelayError | None, finished: bool) -> None:
        """Reports how the answer went to the channel's breaker and metrics (once). A failure
        after the first byte counts against the channel's health but is never retried."""
        if self.settled:
            return
        self.settled = True
        name = self.candidate.channel.name
        self.upstreams.verdict(name, error, finished or error is not None)
        self.upstreams.attempt_over(name, self.started, error if error is not None and error.retryable else None)


def retry_after_seconds(err: RelayError) -> float | None:
    value = err.headers.get("retry-after") or err.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    """Short, jittered: 25-75 ms, then 50-150 ms, capped."""
    return float(min(0.05 * 2 ** (attempt - 1), 0.4) * random.uniform(0.5, 1.5))


async def _ask(answer: Answer, stream: bool) -> None:
    """Sends the attempt down the adaptor path it names; the result lands on `answer`."""
    adaptor, call = answer.candidate.adaptor, answer.call
    if answer.path == "native_chat":  # declared by capabilities.native_chat
        answer.raw = await cast(NativeChat, adaptor).chat_passthrough(call)
    elif answer.path == "native_responses":  # declared by capabilities.native_responses
        answer.raw = await cast(NativeResponses, adaptor).responses_passthrough(call)
    elif answer.path == "native_messages":  # declared by capabilities.native_messages
        answer.raw = await cast(NativeMessages, adaptor).messages_passthrough(call)
    elif stream:
        answer.stream = await adaptor.open_stream(call)
    else:
        answer.completion = await adaptor.complete(call)


async def dispatch(
    candidates: list[Candidate],
    plan: Callable[[Candidate], Attempt],
    request_id: str,
    stream: bool,
    upstreams: Upstreams,
    owner: str = "",
) -> Answer:
    router, breakers, metrics = upstreams.router, upstreams.breakers, upstreams.metrics
    failed: list[str] = []
    last_error: RelayError | None = None
    attempts = 0
    cooling: list[Candidate] = []

    async def attempt(candidate: Candidate) -> Answer | None:
        nonlocal attempts, last_error
        name = candidate.channel.name
        step = plan(candidate)  # a request this channel cannot take is the client's to fix
        if attempts:
            metrics.failovers.labels(candidate.model, failed[-1]).inc()
            await asyncio.sleep(backoff(attempts))
        attempts += 1
        call = Call(step.body, candidate.upstream_model, request_id, {**(step.headers or {}), "x-request-id": request_id},
                    owner=owner, resume=step.resume)
        answer = Answer(candidate, call, step.path, attempts, upstreams, time.monotonic())
        metrics.child(metrics.inflight, name).inc()
        try:
            await _ask(answer, stream)
        except RelayError as e:
            upstreams.attempt_over(name, answer.started, e if e.retryable and not e.local else None)
            upstreams.verdict(name, e, finished=True)
            if not e.retryable:
                e.headers.setdefault("x-relay-channel", name)
                e.headers["x-relay-attempts"] = str(attempts)
                raise
            failed.append(name)
            log.warning("request %s: channel %s failed (%s %s); %s", request_id, name, e.status, e.code,
                        "trying the next one" if attempts < router.max_attempts else "no attempts left")
            last_error = e
            return None
        except BaseException:
            breakers.release(name)
            upstreams.attempt_over(name, answer.started, None)
            raise
        if answer.completion is not None:
            answer.settle(None, finished=True)
        return answer

    for candidate in candidates:
        if attempts >= router.max_attempts:
            break
        if not breakers.allow(candidate.channel.name):
            cooling.append(candidate)
            continue
        if (answer := await attempt(candidate)) is not None:
            return answer
    # Panic mode: every channel left is cooling down; ask them anyway, soonest-ready first.
    for candidate in sorted(cooling, key=lambda c: breakers.retry_after(c.channel.name)):
        if attempts >= router.max_attempts:
            break
        log.info("request %s: every other channel failed or is cooling down; asking %s anyway",
                 request_id, candidate.channel.name)
        if (answer := await attempt(candidate)) is not None:
            return answer
    assert last_error is not None  # at least one candidate exists and max_attempts >= 1
    last_error.headers["x-relay-attempts"] = str(attempts)
    last_error.headers["x-relay-channel"] = failed[-1]
    raise last_error
