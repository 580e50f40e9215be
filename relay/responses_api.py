"""POST /v1/responses: a Responses request on any channel, stored by Relay.

The stored state a request names is resolved first (relay.stateful.prepare), so every channel
answers a stateless request; the answer is converted (or relayed, on a native channel) and,
unless `store` is false, stored under Relay's own id before its terminal event goes out.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from relay_adaptors.kernel.base import Resume
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.ids import new_id
from relay_adaptors.responses import (
    ChatConversion,
    Envelope,
    ResponsesStream,
    completion_to_response,
    to_chat,
    validate_responses_request,
)
from relay_adaptors.responses.compact import readable_by_upstream
from relay_adaptors.responses.request import convert_input
from relay_adaptors.responses.tools import ToolNames
from relay_config.schema import TenantConfig

from .appkeys import METRICS, RUNTIME
from .conversations import conversations_of
from .dispatch import Answer, Attempt
from .httpio import read_json
from .lifecycle import Flush, ModelCall, TapFactory
from .native import ResponsesTap
from .outcome import StreamOutcome
from .responses_extra import compaction_turn
from .responses_writer import write_events, write_responses_stream
from .router import Candidate
from .runtime import Runtime
from .sse_out import KeepaliveWriter
from .stateful.appkeys import RECORDS
from .stateful.chain import Prepared, prepare
from .store import StoreError

log = logging.getLogger("relay")


class Turn:
    """One Responses request on its way to a channel: its conversions (made once per form),
    the plan for each candidate, and where its answer is stored."""

    def __init__(self, request: web.Request, rt: Runtime, tenant: TenantConfig, prepared: Prepared):
        self.request, self.rt, self.tenant, self.prepared = request, rt, tenant, prepared
        self.body = prepared.body
        self.model: str = self.body["model"]
        self.candidates = rt.router.candidates(tenant, self.model)
        self.response_id = new_id("resp_")
        self.records = request.app[RECORDS]
        self._forms: dict[bool, ChatConversion] = {}
        self.reject_tools = rt.config.responses.unsupported_tools == "reject"
        self.answered: Answer | None = None  # the attempt that answered (background runs)

    def convert(self, candidate: Candidate) -> ChatConversion:
        """The chat form for this channel (two at most: with or without replayed reasoning)."""
        keep = candidate.adaptor.capabilities.reasoning_items
        if keep not in self._forms:
            conv = to_chat(self.body, reject_unsupported_tools=self.reject_tools, keep_reasoning=keep)
            conv.echo.update(self.prepared.echo)
            self._forms[keep] = conv
        return self._forms[keep]

    def plan(self, candidate: Candidate) -> Attempt:
        if candidate.adaptor.capabilities.native_responses:
            native = self.body
            if (readable := readable_by_upstream(native.get("input"))) is not native.get("input"):
                native = {**native, "input": readable}
            return Attempt(native, "native_responses")
        chat = self.convert(candidate).chat
        return Attempt(chat, resume=self._resume(candidate, chat))

    def _resume(self, candidate: Candidate, chat: dict[str, Any]) -> Resume | None:
        """A channel that kept the previous turn's session continues it: only the messages
        after the stored history are new to it."""
        prev = self.prepared.previous
        if prev is None or not candidate.adaptor.capabilities.resumes_sessions:
            return None
        if prev.get("channel") != candidate.channel.name or not prev.get("session"):
            return None
        history = self.body["input"][: self.prepared.history]
        seen = len(convert_input(history, ToolNames(), candidate.adaptor.capabilities.reasoning_items))
        system = 1 if chat["messages"] and self.body.get("instructions") is not None else 0
        return Resume(prev["session"], seen + system)

    async def admit(self, call: ModelCall) -> None:
        """Takes the tenant's limits for this request (a request the bridge cannot take is a
        400 first, before any upstream call)."""
        messages = self.admission_messages()
        max_out = self.body.get("max_output_tokens")
        await call.admit(self.candidates[0].model, messages, max_out if isinstance(max_out, int) else None,
                         self.body.get("stream") is True)

    def admission_messages(self) -> list[dict[str, Any]]:
        bridged = [c for c in self.candidates if not c.adaptor.capabilities.native_responses]
        if bridged:
            messages: list[dict[str, Any]] = self.convert(bridged[0]).chat["messages"]
            return messages
        return [{"content": self.body["input"] if isinstance(self.body.get("input"), str) else str(self.body.get("input"))}]

    async def store(self, response: dict[str, Any], answer: Answer | None) -> None:
        """Stores the response (unless `store` is false). A store that fails to answer costs
        the client the stored copy, never the answer itself: logged and counted."""
        if self.prepared.conversation is not None and response.get("status") in ("completed", "incomplete"):
            await self._add_to_conversation(self.prepared.conversation, response)
        if not self.prepared.store:
            return
        record = {"response": response, "items": self.prepared.items, "model": self.model,
                  "channel": answer.candidate.channel.name if answer is not None else None,
                  "session": answer.report.session_id if answer is not None else None}
        try:
            await self.records.put(self.tenant.name, record)
        except StoreError as e:
            self.request.app[METRICS].store_errors.labels("responses").inc()
            log.error("could not store response %s of tenant %s: %s", response.get("id"), self.tenant.name, e)
        except RelayError as e:  # its output took it over the size cap: answered, not stored
            log.warning("response %s of tenant %s not stored: %s", response.get("id"), self.tenant.name, e.message)

    async def _add_to_conversation(self, conversation: str, response: dict[str, Any]) -> None:
        """The request's own input and the response's output join the conversation. A failure
        costs the conversation these items, never the answer: logged and counted."""
        items = self.prepared.items[self.prepared.history:] + list(response.get("output") or ())
        try:
            await conversations_of(self.request).append(self.tenant.name, conversation, items)
        except (StoreError, RelayError) as e:
            self.request.app[METRICS].store_errors.labels("conversations").inc()
            log.error("could not add response %s to conversation %s of tenant %s: %s", response.get("id"), conversation,
                      self.tenant.name, e)

    @property
    def keeps(self) -> bool:
        """Whether the answer is kept (stored, or added to a conversation) before its end goes out."""
        return self.prepared.store or self.prepared.conversation is not None

    @property
    def resolved(self) -> dict[str, Any]:
        """The stored state Relay resolved instead of the upstream (which never saw it), for a
        native answer to repeat; nothing when there was none, so a stateless answer is relayed as sent."""
        return {k: v for k, v in self.prepared.echo.items() if k != "store" and v}

    def native_tap(self, streaming: bool, outcome: StreamOutcome, hold: bool | None = None) -> ResponsesTap:
        """A native channel's bytes, renamed to Relay's id; a stored answer's end is held back
        until it is stored (unless `hold` says otherwise)."""
        return ResponsesTap(streaming, outcome, self.model, self.response_id,
                            hold_final=self.keeps if hold is None else hold, echo=self.resolved)

    def stored_passthrough(self, answer: Answer) -> tuple[TapFactory, Flush | None]:
        """The tap for a native answer, and the flush that stores its final response before
        the bytes held back behind it go out (None when nothing is stored)."""
        taps: list[ResponsesTap] = []

        def make_tap(streaming: bool, outcome: StreamOutcome) -> ResponsesTap:
            taps.append(self.native_tap(streaming, outcome))
            return taps[0]

        async def flush() -> bytes:
            final, held = taps[0].release()
            if final is not None:
                await self.store(final, answer)
            return held

        return make_tap, flush if self.keeps else None


async def no_websocket(request: web.Request) -> web.StreamResponse:
    """GET /v1/responses: the Responses WebSocket transport, which Relay does not serve. 426
    tells a client to use plain HTTPS (Codex falls back at once instead of retrying)."""
    raise RelayError(426, "Relay serves the Responses API over HTTPS only (POST /v1/responses); the WebSocket "
                     "transport is not available.", code="websocket_not_supported")


async def responses(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    # Every field Relay reads is type-checked here, for native channels too, before admission.
    body = validate_responses_request(await read_json(request, rt.config.server.max_body_bytes))
    prepared = await prepare(request, tenant, body)
    turn = Turn(request, rt, tenant, prepared)
    if prepared.compaction:
        return await compaction_turn(turn)
    if prepared.background:
        from .stateful.background import start

        return await start(turn)
    return await answer_now(turn)


async def answer_now(turn: Turn) -> web.StreamResponse:
    request, body, model = turn.request, turn.body, turn.model
    stream = body.get("stream") is True
    async with ModelCall(request, turn.rt, turn.tenant, "responses") as call:
        await turn.admit(call)
        answer = await call.dispatch(turn.candidates, turn.plan, stream)
        headers = answer.headers()
        if answer.raw is not None:
            make_tap, flush = turn.stored_passthrough(answer)
            return await call.relay(answer, make_tap, headers, flush)
        conv = turn.convert(answer.candidate)
        if conv.tools.dropped:
            headers["x-relay-dropped-tools"] = ",".join(sorted(set(conv.tools.dropped)))
            log.info("request %s: dropped tools the channel cannot run: %s", call.request_id, headers["x-relay-dropped-tools"])
        envelope = Envelope(model, conv.echo, turn.response_id)
        if answer.completion is not None:
            response = completion_to_response(answer.completion, envelope, conv.names)
            await turn.store(response, answer)
            return call.json(response, answer.completion.get("usage"), headers)
        machine = ResponsesStream(envelope, conv.names)
        stream_in = answer.stream
        assert stream_in is not None

        async def write(out: KeepaliveWriter, outcome: StreamOutcome) -> None:
            await write_events(out, machine.start())
            await write_responses_stream(out, stream_in, machine, outcome, lambda r: turn.store(r, answer))

        return await call.stream(answer, write, headers)
