"""Background responses: created `queued`, answered at once, run by the instance that took them.

Limits are checked before the answer (a refused request is a 429, not a failed response).
The run stores `in_progress`, then the final response. While it runs, the instance beats a
small document every few seconds; any instance reading the response sees a run whose beat
stopped (its instance crashed or restarted) as `failed`. `cancel` stops a run here at once
(the upstream call is cut) or, when another instance runs it, leaves a note that instance
reads on its next beat.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.responses import Envelope, completion_to_response
from relay_adaptors.responses.stream import failure_code

from ..appkeys import RUNTIME, STORE
from ..httpio import json_response
from ..lifecycle import ModelCall
from ..store import Store, StoreError
from .appkeys import RECORDS, RUNS
from .eventlog import EventLog
from .records import not_found, unavailable

if TYPE_CHECKING:
    from ..responses_api import Turn

log = logging.getLogger("relay")
BEAT_EVERY = 2.0  # seconds
STALE_AFTER = 15.0  # a run whose beat is older than this has lost its instance
RUNNING = ("queued", "in_progress")
LOST = {"code": "server_error", "message": "The gateway instance running this background response stopped before it "
        "finished (it was restarted or crashed); create the response again."}
UNSTORED = {"code": "server_error", "message": "The response finished but could not be stored: with its history it "
            "exceeds the gateway's responses.max_stored_bytes, or the store did not answer. Create it again."}


@dataclass(slots=True)
class Runs:
    """The background responses this process runs, by id."""

    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    logs: dict[str, EventLog] = field(default_factory=dict)  # what streamed runs wrote so far
    owners: dict[str, str] = field(default_factory=dict)  # response id -> tenant
    cancelled: set[str] = field(default_factory=set)  # by a client (not by the shutdown)

    def count(self, tenant: str) -> int:
        return sum(1 for t in self.owners.values() if t == tenant)

    async def stop_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def start(turn: Turn) -> web.StreamResponse:
    runs: Runs = turn.request.app[RUNS]
    cap = turn.rt.config.responses.max_background
    if runs.count(turn.tenant.name) >= cap:  # each run holds an upstream call: bounded per tenant
        raise RelayError(429, f"This tenant already has {cap} background responses running on this instance "
                         "(responses.max_background); wait for one to finish.", type="rate_limit_error",
                         code="too_many_background_responses", headers={"retry-after": "5"})
    runs.owners[turn.response_id] = turn.tenant.name  # counted from now: requests arriving meanwhile see it
    try:
        call = await admitted(turn)
        try:
            queued = await _store_queued(turn)
        except BaseException as e:  # refused (too large) or the store is down: the call's limits go back
            await call.__aexit__(type(e), e, e.__traceback__)
            raise
    except BaseException:
        runs.owners.pop(turn.response_id, None)
        raise
    if turn.body.get("stream") is True:
        from .background_stream import run_streaming, stream_to_client

        events = EventLog()
        spawn(turn, call, lambda: run_streaming(turn, call, events), events)
        return await stream_to_client(turn.request, events, turn.rt.config.server.sse_keepalive)
    spawn(turn, call, lambda: _answer(turn, call))
    return json_response(queued)


async def admitted(turn: Turn) -> ModelCall:
    """A model call whose limits are taken (a refusal is this request's 429 / 503)."""
    call = ModelCall(turn.request, turn.rt, turn.tenant, "responses")
    try:
        await turn.admit(call)
    except BaseException as e:
        await call.__aexit__(type(e), e, e.__traceback__)
        raise
    return call


def envelope_of(turn: Turn) -> Envelope:
    conv = turn.convert(turn.candidates[0])
    return Envelope(turn.model, conv.echo, turn.response_id)


async def _store_queued(turn: Turn) -> dict[str, Any]:
    queued = envelope_of(turn).snapshot("queued", [])
    try:
        await beat(turn.request.app[STORE], turn.tenant.name, turn.response_id)
        await turn.records.put(turn.tenant.name, {"response": queued, "items": turn.prepared.items, "model": turn.model})
    except StoreError as e:
        raise unavailable() from e
    return queued


Work = Callable[[], Awaitable[dict[str, Any] | None]]  # the final response, or None if it stored itself


def spawn(turn: Turn, call: ModelCall, work: Work, events: EventLog | None = None) -> None:
    runs: Runs = turn.request.app[RUNS]
    started: list[bool] = []  # a task cancelled before its first step never runs its body
    task = asyncio.get_running_loop().create_task(_run(turn, call, work, started))
    runs.tasks[turn.response_id] = task  # its owner is counted since `start`
    if events is not None:
        runs.logs[turn.response_id] = events

    def done(_: asyncio.Task[None]) -> None:
        runs.tasks.pop(turn.response_id, None)
        runs.owners.pop(turn.response_id, None)
        runs.logs.pop(turn.response_id, None)
        if events is not None:
            events.close()
        if not started:  # cut before it began (a shutdown at once): the call still ends, once
            ending = asyncio.ensure_future(call.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None))
            call.tasks.add(ending)
            ending.add_done_callback(call.tasks.discard)

    task.add_done_callback(done)


async def _run(turn: Turn, call: ModelCall, work: Work, started: list[bool]) -> None:
    started.append(True)
    store, tenant, rid = turn.request.app[STORE], turn.tenant.name, turn.response_id
    runs: Runs = turn.request.app[RUNS]
    me = asyncio.current_task()
    assert me is not None
    beating = asyncio.get_running_loop().create_task(_beat_loop(store, tenant, rid, me, runs))
    try:
        async with call:
            await _set_status(turn, "in_progress")
            response = await work()
        if response is not None:
            if await cancel_requested(store, tenant, rid):
                response = {**response, "status": "cancelled"}
            await turn.store(response, turn.answered)
        await _unless_stored(turn)
    except asyncio.CancelledError:
        by_client = rid in runs.cancelled
        await _finish(turn, "cancelled" if by_client else "failed",
                      None if by_client else {"code": "server_error", "message": "The gateway shut down before this "
                                              "background response finished; create it again."})
    except RelayError as e:
        await _finish(turn, "failed", {"code": failure_code(e), "message": e.redacted().message})
    except Exception:
        log.exception("background response %s of tenant %s failed", rid, tenant)
        await _finish(turn, "failed", {"code": "server_error", "message": "Internal error in the gateway; it has been logged."})
    finally:
        beating.cancel()
        runs.cancelled.discard(rid)


async def _answer(turn: Turn, call: ModelCall) -> dict[str, Any]:
    answer = await call.dispatch(turn.candidates, turn.plan, False)
    if answer.raw is not None:
        body = EventLog()
        await call.pipe(answer, lambda streaming, outcome: turn.native_tap(streaming, outcome, hold=False), body)
        response: dict[str, Any] = json.loads(body.text())
    else:
        assert answer.completion is not None
        conv = turn.convert(answer.candidate)
        response = completion_to_response(answer.completion, Envelope(turn.model, conv.echo, turn.response_id), conv.names)
        call.json(response, answer.completion.get("usage"), {})  # for the ledger; nobody reads the body
    turn.answered = answer
    return response


async def _unless_stored(turn: Turn) -> None:
    """A run whose final response could not be stored (Turn.store logs why) ends `failed` now,
    not `in_progress` until its beat goes stale."""
    try:
        record = await turn.records.get(turn.tenant.name, turn.response_id)
    except RelayError:
        return  # the store is down: nothing can be written either
    if record is not None and record["response"].get("status") in RUNNING:
        await _finish(turn, "failed", UNSTORED)


async def _set_status(turn: Turn, status: str, error: dict[str, Any] | None = None) -> None:
    record = await turn.records.get(turn.tenant.name, turn.response_id)
    if record is None:
        return  # deleted meanwhile
    record["response"] = {**record["response"], "status": status, **({"error": error} if error else {})}
    await turn.records.put(turn.tenant.name, record)


async def _finish(turn: Turn, status: str, error: dict[str, Any] | None) -> None:
    try:
        await asyncio.shield(_set_status(turn, status, error))
    except (StoreError, RelayError) as e:
        log.error("could not store the end of background response %s: %s", turn.response_id, e)


# --- beats and cancellation notes ------------------------------------------------------------
def _beat_key(rid: str) -> str:
    return "beat:" + rid


def _cancel_key(rid: str) -> str:
    return "cancel:" + rid


async def beat(store: Store, tenant: str, rid: str, now: Callable[[], float] = time.time) -> None:
    await store.doc_put(tenant, _beat_key(rid), repr(now()), STALE_AFTER * 4)


async def cancel_requested(store: Store, tenant: str, rid: str) -> bool:
    return await store.doc_get(tenant, _cancel_key(rid)) is not None


async def _beat_loop(store: Store, tenant: str, rid: str, run: asyncio.Task[None], runs: Runs) -> None:
    while True:
        await asyncio.sleep(BEAT_EVERY)
        try:
            if await cancel_requested(store, tenant, rid):
                runs.cancelled.add(rid)  # by a client (on another instance), not by a shutdown
                run.cancel()
                return
            await beat(store, tenant, rid)
        except StoreError as e:
            log.warning("background response %s: could not beat: %s", rid, e)


def lost(last_beat: str | None, now: float) -> bool:
    """Whether a run whose last beat is `last_beat` (None: never, or expired) has lost its instance."""
    try:
        return last_beat is None or now - float(last_beat) >= STALE_AFTER
    except ValueError:
        return True


async def current(request: web.Request, tenant: str, record: dict[str, Any],
                  now: Callable[[], float] = time.time) -> dict[str, Any]:
    """The response as it stands; a run no instance beats for any more has failed."""
    response: dict[str, Any] = record["response"]
    rid = response["id"]
    if response.get("status") not in RUNNING or rid in request.app[RUNS].tasks:
        return response
    try:
        if not lost(await request.app[STORE].doc_get(tenant, _beat_key(rid)), now()):
            return response
    except StoreError as e:
        raise unavailable() from e
    response = {**response, "status": "failed", "error": LOST}
    try:
        await request.app[RECORDS].put(tenant, {**record, "response": response})
    except StoreError as e:  # answered as it stands; written by the next reader
        log.warning("could not store that background response %s was lost: %s", rid, e)
    return response


async def stop(request: web.Request, tenant: str, rid: str) -> None:
    """Stops a running background response as its client asked (cancel, or delete)."""
    runs: Runs = request.app[RUNS]
    task = runs.tasks.get(rid)
    if task is not None:
        runs.cancelled.add(rid)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    else:  # another instance runs it: it reads this on its next beat
        try:
            await request.app[STORE].doc_put(tenant, _cancel_key(rid), "1", STALE_AFTER * 4)
        except StoreError as e:
            raise unavailable() from e


async def cancel(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request).name
    rid = request.match_info["response_id"]
    records = request.app[RECORDS]
    record = await records.get(tenant, rid)
    if record is None:
        raise not_found(rid)
    if not record["response"].get("background"):
        raise RelayError(400, "Only background responses can be cancelled.", param="response_id", code="not_background")
    response = await current(request, tenant, record)
    if response.get("status") not in RUNNING:
        return json_response(response)
    await stop(request, tenant, rid)
    record = await records.get(tenant, rid)
    response = record["response"] if record is not None else response
    if response.get("status") in RUNNING:
        response = {**response, "status": "cancelled"}
    return json_response(response)
