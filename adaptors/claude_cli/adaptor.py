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
from ..kernel.errors import RelayError, scrubbed, upstream_bad_response, upstream_timeout
from ..kernel.redaction import Redactor
from ..kernel.usage import Usage
from . import prompt
from .framer import LineFramer, LineTooLong
from .messages import Result, StreamEvent, parse_message
from .process import CliProcess
from .sessions import Fork, OwnerDirs, SessionDirs, default_root, valid_session_id

log = logging.getLogger("relay")
# What the child may see of the gateway's environment: enough to find node, nothing secret.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "HTTPS_PROXY", "NO_PROXY")
# Seconds a CLI that has answered gets to save its session and exit before it is stopped.
SESSION_SAVE_WAIT = 10.0
# Spawn errors about this host and this request (the prompt file did not fit, no process or
# file slots left), not about the channel.
HOST_EXHAUSTED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


class _SessionGone(Exception):
    """The CLI had no file for the session it was asked to resume (and asked the model nothing)."""


class ClaudeCliAdaptor:
    def __init__(self, cfg: ClaudeCliChannel):
        self.name = cfg.name
        self.cfg = cfg
        self.capabilities = Capabilities(client_tools=False, counts_processes=True, reports_cost=True,
                                         resumes_sessions=cfg.sessions)
        self.slots = asyncio.Semaphore(cfg.max_concurrent)  # FIFO: waiters are served in order
        self.running = 0  # processes alive now (relay_cli_processes)
        # The CLI's output, stderr and error text may quote the key it was given: nothing of
        # it reaches a client or a log line unscrubbed, whatever logging filter is set up.
        self.scrub = Redactor(s for s in (cfg.api_key, urlsplit(cfg.base_url).password if cfg.base_url else None) if s)
        self.sessions = SessionDirs(cfg.sessions_dir or default_root(), cfg.sessions_ttl) if cfg.sessions else None
        self._sweeping: asyncio.Task[None] | None = None

    async def complete(self, call: Call) -> dict[str, Any]:
        stream = await self.open_stream(call)
        items: list[dict[str, Any] | str] = []
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
        dirs = self._owner_dirs(call.owner)
        fork = await self._fork(call, dirs)
        try:
            inv = self._invocation(call, dirs, fork)
            call.ignored_params.extend(inv.ignored)
            if dirs is None or fork is None:
                return await self._start(call, inv, dirs, fork=None)
            try:
                return await self._start(call, inv, dirs, fork=fork)
            except _SessionGone:
                log.info("channel %s: the CLI could not resume a copy of session %s; replaying the conversation",
                         self.name, call.resume and call.resume.session_id)
        except BaseException:
            if dirs and fork:
                dirs.discard(fork.session_id)
            raise
        dirs.discard(fork.session_id)
        return await self._start(call, self._invocation(call, dirs, None), dirs, fork=None)

    def _owner_dirs(self, owner: str) -> OwnerDirs | None:
        """The owner's session directories, or None to run without a saved session (sessions
        off, no owner, or a directory that is not safe to use: the request still runs)."""
        if self.sessions is None or not owner:
            return None
        try:
            dirs = self.sessions.for_owner(owner)
        except OSError as e:
            log.warning("channel %s: sessions are off for this request, the sessions directory is unusable: %s", self.name, e)
            return None
        if self.sessions.sweep_due() and (self._sweeping is None or self._sweeping.done()):
            self._sweeping = asyncio.get_running_loop().create_task(self._sweep(self.sessions))
        return dirs

    async def _sweep(self, sessions: SessionDirs) -> None:
        try:
            removed = await asyncio.to_thread(sessions.sweep)
        except Exception as e:  # a background chore: it must not take anything else down
            log.warning("channel %s: sweeping old CLI sessions failed: %s", self.name, e)
            return
        if removed:
            log.info("channel %s: removed %d CLI session files older than %gs", self.name, removed, sessions.ttl)

    async def _fork(self, call: Call, dirs: OwnerDirs | None) -> Fork | None:
        """The id of a fresh copy of the session to resume, when this owner has that session;
        otherwise (None) the request is replayed in full, as on any other channel."""
        if call.resume is None or dirs is None:
            return None
        sid, new_from = call.resume.session_id, call.resume.new_from
        # The id comes from Relay's store, but only a UUID may reach argv or a path.
        if not valid_session_id(sid):
            why = "it is not a session id"
        elif not prompt.resumable_from(call.request.get("messages") or [], new_from):
            why = "the messages do not continue it"
        else:
            try:
                fork = await asyncio.to_thread(dirs.fork, sid)
            except OSError as e:
                fork, why = None, f"it could not be copied: {e}"
            else:
                why = "this owner has no such session here"
            if fork:
                return fork
        log.info("channel %s: not resuming CLI session %r (%s); replaying the conversation", self.name, sid[:64], why)
        return None

    def _invocation(self, call: Call, dirs: OwnerDirs | None, fork: Fork | None) -> prompt.Invocation:
        cfg = self.cfg
        base_env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        session = None
        if dirs is not None:
            session = (prompt.Session(dirs.config, fork.session_id, call.resume.new_from) if fork and call.resume
                       else prompt.Session(dirs.config))
        return prompt.build(call.request, call.upstream_model, command=cfg.command, base_env=base_env, home="",
                            extra_args=cfg.extra_args, api_key=cfg.api_key, base_url=cfg.base_url,
                            first_byte=cfg.timeout.first_byte, session=session)

    async def _start(self, call: Call, inv: prompt.Invocation, dirs: OwnerDirs | None, *, fork: Fork | None) -> ChatStream:
        cfg = self.cfg
        try:
            await asyncio.wait_for(self.slots.acquire(), cfg.queue_timeout)
        except TimeoutError:
            # Relay's own queue, not the upstream: local, so it never opens the breaker.
            raise RelayError(429, f"All {cfg.max_concurrent} processes of channel {self.name!r} stayed busy for "
                             f"{cfg.queue_timeout:g}s; retry shortly.", type="rate_limit_error", code="channel_busy",
                             headers={"retry-after": "2"}, local=True) from None
        try:
            proc = await CliProcess.spawn(inv.argv, inv.env, inv.stdin, inv.files, cwd=dirs.work if dirs else None)
        except (OSError, ValueError) as e:
            self.slots.release()
            raise self._spawn_failed(e) from None
        except BaseException:
            self.slots.release()
            raise
        self.running += 1
        run = _Run(self, proc, call.request.get("model", call.upstream_model), call.report, dirs, fork)
        try:
            first = await run.until_first()
        except BaseException:
            await run.close()
            if fork and run.result is not None and run.result.before_any_turn:
                raise _SessionGone from None
            raise
        return _Stream(run, first)

    def _spawn_failed(self, e: OSError | ValueError) -> RelayError:
        # The path and the OS error go to the log only.
        log.warning("channel %s: cannot start %r: %s", self.name, self.cfg.command,
                    self.scrub(f"{type(e).__name__}: {e}"))
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

    def __init__(self, owner: ClaudeCliAdaptor, proc: CliProcess, model: str, report: CallReport,
                 dirs: OwnerDirs | None = None, fork: Fork | None = None):
        self.owner = owner
        self.dirs = dirs  # the CLI saves this run's session there: its id goes to the report
        self.persists = dirs is not None
        self.fork = fork  # the session copy this run resumes, removed unless the run saves to it
        self.answered_session: str | None = None
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
            yield [scrubbed(i, self.scrub) if isinstance(i, RelayError) else i for i in batch]

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
        log.warning("channel %s: %s; stderr: %s", self.owner.name, self.scrub(what), self.proc.stderr_tail(self.scrub))

    def _convert(self, msg: Any) -> list[StreamItem]:
        if isinstance(msg, StreamEvent):
            # Usage comes from the result line (it has the whole run's numbers).
            return [c for c in self.events.event(msg.event) if isinstance(c, (str, RelayError)) or c.get("choices")]
        if isinstance(msg, Result):
            self.result = msg
            if msg.cost_usd is not None:
                self.report.cost_usd = msg.cost_usd
            # The CLI reports a reply cut at max_tokens as an error, after the whole message
            # (stop_reason max_tokens) has streamed: for the client that is finish_reason length.
            truncated = self.events.finished and self.events.stop_reason == "max_tokens" and not msg.api_error_status
            if msg.is_error and not truncated:
                return [self._error(msg)]
            if self.persists:
                # A session is worth resuming once its turn is answered; it is reported when
                # the CLI has saved it (see _shutdown).
                self.answered_session = msg.session_id
            return [usage_chunk(self.events.id, self.model, self.events.created, Usage.from_anthropic(msg.usage).chat())]
        return []

    def _error(self, res: Result) -> RelayError:
        if res.api_error_status:
            return map_error(self.owner.name, res.api_error_status, {}, {"error": {"message": res.text}})
        # Scrubbed before it is cut, so a cut cannot leave part of a secret behind.
        text = self.scrub(res.text)
        self._log(f"the CLI reported an error: {text[:500]}")
        detail = text[:200] or "no detail"
        return RelayError(502, f"upstream channel {self.owner.name!r}: the claude CLI failed ({detail})",
                          type="api_error", code="upstream_error")

    async def _until_saved(self, session_id: str) -> None:
        """The CLI writes the session file after its result line, then exits: only a run that
        exited on its own left a whole session, so only then is its id reported (a cut one
        would resume a conversation with its last turn missing)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.proc.wait(), SESSION_SAVE_WAIT)
        if self.proc.proc.returncode != 0:
            self._log(f"the CLI did not exit cleanly after answering (code {self.proc.proc.returncode}); "
                      "its session will not be resumed")
            return
        assert self.dirs is not None
        if await asyncio.to_thread(self.dirs.saved_answer, session_id, self.fork.users if self.fork else 0):
            self.report.session_id = session_id
            return
        log.warning("channel %s: the CLI saved session %s without the whole turn; the next turn replays the "
                    "conversation instead of resuming it", self.owner.name, session_id)
        self.dirs.discard(session_id)

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
            if self.answered_session:
                await self._until_saved(self.answered_session)
            await self.proc.close()
            if self.dirs and self.fork and self.report.session_id != self.fork.session_id:
                self.dirs.discard(self.fork.session_id)
        finally:
            self.owner.running -= 1
            self.owner.slots.release()
