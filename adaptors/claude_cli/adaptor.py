"""Channel type `claude_cli`: the Claude Code CLI, one process per request, bounded."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from relay_config.schema import ClaudeCliChannel

from ..anthropic.errors import map_error
from ..anthropic.stream import EventConverter
from ..kernel.accumulate import accumulate
from ..kernel.base import Call, CallReport, Capabilities, ChatStream, StreamItem
from ..kernel.chunks import usage_chunk
from ..kernel.deadline import Deadline
from ..kernel.errors import RelayError, upstream_bad_response, upstream_timeout
from ..kernel.usage import Usage
from . import prompt
from .framer import LineFramer, LineTooLong
from .messages import Result, StreamEvent, parse_message
from .process import CliProcess
from .scrub import Scrubber

log = logging.getLogger("relay")
# What the child may see of the gateway's environment: enough to find node, nothing secret.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "HTTPS_PROXY", "NO_PROXY")
# Spawn errors about this host and this request (the prompt file did not fit, no process or
# file slots left), not about the channel.
HOST_EXHAUSTED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


class ClaudeCliAdaptor:
    capabilities = Capabilities(client_tools=False, counts_processes=True, reports_cost=True)

    def __init__(self, cfg: ClaudeCliChannel):
        self.name = cfg.name
        self.cfg = cfg
        self.slots = asyncio.Semaphore(cfg.max_concurrent)  # FIFO: waiters are served in order
        self.running = 0  # processes alive now (relay_cli_processes)
        self.scrub = Scrubber(cfg.api_key, urlsplit(cfg.base_url).password if cfg.base_url else None)

    async def complete(self, call: Call) -> dict[str, Any]:
        stream = await self.open_stream(call)
        items: list[dict[str, Any]] = []
        try:
            async for batch in stream:
                for item in batch:
                    if isinstance(item, RelayError):
                        raise item
                    items.append(item)
        finally:
            await stream.aclose()
        return accumulate(items, call.request.get("model", call.upstream_model))

    async def open_stream(self, call: Call) -> ChatStream:
        cfg = self.cfg
        base_env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        inv = prompt.build(call.request, call.upstream_model, command=cfg.command, base_env=base_env, home="",
                           extra_args=cfg.extra_args, api_key=cfg.api_key, base_url=cfg.base_url,
                           first_byte=cfg.timeout.first_byte)
        call.ignored_params.extend(inv.ignored)
        try:
            await asyncio.wait_for(self.slots.acquire(), cfg.queue_timeout)
        except TimeoutError:
            # Relay's own queue, not the upstream: local, so it never opens the breaker.
            raise RelayError(429, f"All {cfg.max_concurrent} processes of channel {self.name!r} stayed busy for "
                             f"{cfg.queue_timeout:g}s; retry shortly.", type="rate_limit_error", code="channel_busy",
                             headers={"retry-after": "2"}, local=True) from None
        try:
            proc = await CliProcess.spawn(inv.argv, inv.env, inv.stdin, inv.files)
        except (OSError, ValueError) as e:
            self.slots.release()
            raise self._spawn_failed(e) from None
        except BaseException:
            self.slots.release()
            raise
        self.running += 1
        run = _Run(self, proc, call.request.get("model", call.upstream_model), call.report)
        try:
            first = await run.until_first()
        except BaseException:
            await run.close()
            raise
        return _Stream(run, first)

    def _spawn_failed(self, e: OSError | ValueError) -> RelayError:
        # The path and the OS error go to the log only.
        log.warning("channel %s: cannot start %r: %s", self.name, self.cfg.command,
                    self.scrub.text(f"{type(e).__name__}: {e}"))
        return spawn_error(self.name, e)


def spawn_error(channel: str, e: OSError | ValueError) -> RelayError:
    """What the client hears when the CLI could not be started: no path, no OS detail.

    Only failures of this attempt on this host (no disk for the prompt file, no processes or
    files left) are `local`; anything else means the configured command cannot run, which
    breaks the channel for everyone and rightly counts toward its breaker."""
    local = isinstance(e, OSError) and e.errno in HOST_EXHAUSTED
    return RelayError(502, f"upstream channel {channel!r} is unreachable: the claude CLI could not be started "
                      "(the gateway log has the reason)", type="api_error", code="upstream_unreachable", local=local)


class _Stream(AsyncGenerator[list[StreamItem], None]):
    """A run's output as a ChatStream whose aclose() ends the process even if it was never
    iterated (a plain async generator skips its `finally` then)."""

    def __init__(self, run: _Run, first: list[StreamItem]):
        self._run = run
        self._gen = run.stream(first)

    async def asend(self, value: None) -> list[StreamItem]:
        return await self._gen.asend(value)

    async def athrow(self, typ: Any, val: Any = None, tb: TracebackType | None = None, /) -> list[StreamItem]:
        if val is None and tb is None:
            return await self._gen.athrow(typ)
        return await self._gen.athrow(typ, val, tb)

    async def aclose(self) -> None:
        try:
            await self._gen.aclose()
        finally:
            await self._run.close()


class _Run:
    """One process's output, converted: stream events through the Anthropic converter, usage
    and errors from the result line. Every error it yields and every line it logs is
    scrubbed of the channel's secrets."""

    def __init__(self, owner: ClaudeCliAdaptor, proc: CliProcess, model: str, report: CallReport):
        self.owner = owner
        self.scrub = owner.scrub
        self.report = report  # the Call's: the cost goes there for the ledger
        self.proc = proc
        self.framer = LineFramer()
        self.events = EventConverter(owner.name, model)
        self.model = model
        self.deadline = Deadline(owner.cfg.timeout)
        self.result: Result | None = None
        self._closing: asyncio.Future[None] | None = None

    async def until_first(self) -> list[StreamItem]:
        """Reads until the model's answer begins; an error before that is raised, so the
        gateway may still try another channel."""
        items: list[StreamItem] = []
        async for batch in self._batches():
            items += batch
            if items:
                break
        if items and isinstance(items[0], RelayError):
            raise items[0]
        return items

    async def stream(self, first: list[StreamItem]) -> ChatStream:
        try:
            if first:
                yield first
            if first and isinstance(first[-1], RelayError):
                return
            async for batch in self._batches():
                yield batch
                if batch and isinstance(batch[-1], RelayError):
                    return
        finally:
            await self.close()

    async def _batches(self) -> AsyncIterator[list[StreamItem]]:
        async for batch in self._raw_batches():
            yield [self.scrub.error(i) if isinstance(i, RelayError) else i for i in batch]

    async def _raw_batches(self) -> AsyncIterator[list[StreamItem]]:
        """Chat items per stdout chunk, ending with the result (or the error that replaced it)."""
        try:
            while self.result is None:
                left, what = self.deadline.next_wait()
                try:
                    data = await asyncio.wait_for(self.proc.read(), left)
                except TimeoutError:
                    yield [upstream_timeout(self.owner.name, what)]
                    return
                lines = self.framer.push(data) if data else self.framer.flush()
                items: list[StreamItem] = []
                for line in lines:
                    items += self._convert(parse_message(line))
                if items:
                    self.deadline.got_first = True
                    yield items
                if not data:
                    if self.result is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.proc.proc.wait(), 2)
                        yield [self._died()]
                    return
        except (ValueError, LineTooLong) as e:
            self._log(f"unreadable CLI output ({e})")
            yield [upstream_bad_response(self.owner.name, str(e))]

    def _log(self, what: str) -> None:
        """A warning about this run with the stderr tail, both scrubbed."""
        log.warning("channel %s: %s; stderr: %s", self.owner.name, self.scrub.text(what), self.proc.stderr_tail(self.scrub.text))

    def _convert(self, msg: Any) -> list[StreamItem]:
        if isinstance(msg, StreamEvent):
            # Usage comes from the result line (it has the whole run's numbers).
            return [c for c in self.events.event(msg.event) if isinstance(c, RelayError) or c.get("choices")]
        if isinstance(msg, Result):
            self.result = msg
            if msg.cost_usd is not None:
                self.report.cost_usd = msg.cost_usd
            # The CLI reports a reply cut at max_tokens as an error, after the whole message
            # (stop_reason max_tokens) has streamed: for the client that is finish_reason length.
            truncated = self.events.finished and self.events.stop_reason == "max_tokens" and not msg.api_error_status
            if msg.is_error and not truncated:
                return [self._error(msg)]
            return [usage_chunk(self.events.id, self.model, self.events.created, Usage.from_anthropic(msg.usage).chat())]
        return []

    def _error(self, res: Result) -> RelayError:
        if res.api_error_status:
            return map_error(self.owner.name, res.api_error_status, {}, {"error": {"message": res.text}})
        # Scrubbed before it is cut, so a cut cannot leave part of a secret behind.
        text = self.scrub.text(res.text)
        self._log(f"the CLI reported an error: {text[:500]}")
        detail = text[:200] or "no detail"
        return RelayError(502, f"upstream channel {self.owner.name!r}: the claude CLI failed ({detail})",
                          type="api_error", code="upstream_error")

    def _died(self) -> RelayError:
        code = self.proc.proc.returncode
        self._log(f"the CLI exited (code {code}) without a result")
        return RelayError(502, f"upstream channel {self.owner.name!r}: the claude CLI ended without an answer"
                          f"{f' (exit code {code})' if code is not None else ''}; the gateway log has its stderr",
                          type="api_error", code="upstream_error")

    async def close(self) -> None:
        # Shielded: a cancelled caller must not leave the process alive or the slot taken.
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        try:
            await self.proc.close()
        finally:
            self.owner.running -= 1
            self.owner.slots.release()
