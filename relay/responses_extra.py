"""`POST /v1/responses/input_tokens` and `POST /v1/responses/compact`.

Both take a Responses request body (history by `previous_response_id` / `conversation` too),
are tenant-scoped like every model endpoint (an unknown or forbidden model is a 404 naming
`model`) and answer in OpenAI's shapes.

- input_tokens: the channel first in line counts when it can ask its upstream
  (`capabilities.counts_tokens`, the same TokenCounter path as /v1/messages/count_tokens);
  otherwise Relay estimates the chat form the request would be sent as, and says so in
  `x-relay-estimate: true`. No model is called, so nothing is admitted or billed.
- compact: a real model call (admitted, dispatched with failover, billed to the ledger as api
  "responses"): the routed channel's model summarises the conversation and the answer is the
  compacted item list (adaptors/responses/compact.py says what Relay puts in the item).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from relay_adaptors.anthropic.request import to_messages
from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import Call, TokenCounter
from relay_adaptors.kernel.errors import upstream_bad_response
from relay_adaptors.kernel.ids import new_id
from relay_adaptors.kernel.tokens import estimate_prompt, estimate_text
from relay_adaptors.kernel.usage import Usage
from relay_adaptors.responses import ChatConversion, to_chat, validate_responses_request
from relay_adaptors.responses.compact import (
    compacted_output,
    compacted_response,
    encode_summary,
    summary_of,
    summary_request,
)
from relay_adaptors.responses.envelope import Envelope
from relay_config.schema import TenantConfig

from .appkeys import REQUEST_ID, RUNTIME
from .dispatch import Answer, Attempt
from .httpio import json_response, read_json
from .lifecycle import ModelCall, count_one_request
from .responses_writer import write_events
from .router import Candidate, model_not_found
from .sse_out import SSE_HEADERS
from .stateful.chain import expand_history
from .stateful.replay import replay_events
from .vkeys.appkeys import VIRTUAL_KEY

if TYPE_CHECKING:
    from .responses_api import Turn

# A count body may carry these (TokenCountsBody); generation settings do not change a count.
COUNTED = ("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "text",
           "truncation")
# What the summary is made of: the conversation, not how the next turn would be generated.
SUMMARISED = ("model", "input", "instructions")


async def _request_body(request: web.Request) -> tuple[TenantConfig, dict[str, Any]]:
    """The tenant and the validated body, with its stored history expanded."""
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_responses_request(await read_json(request, rt.config.server.max_body_bytes))
    return tenant, await expand_history(request, tenant, body)


def _estimate_chat(chat: dict[str, Any]) -> int:
    """Relay's estimate of a chat request's prompt: its messages, the arguments of the tool
    calls they replay, and the tool definitions."""
    calls = [tc for m in chat["messages"] for tc in m.get("tool_calls") or ()]
    extra = [x for x in (calls, chat.get("tools")) if x]
    return estimate_prompt(chat["messages"]) + sum(estimate_text(jsonfast.dumps(x).decode()) for x in extra)


def counting_channel(request: web.Request, tenant: TenantConfig, model: str) -> Candidate:
    """The channel a count is asked of: the first in line (as /v1/messages/count_tokens asks);
    a model outside the virtual key's allowlist is unknown, as for every model call."""
    first = request.app[RUNTIME].current.router.candidates(tenant, model)[0]
    key = request.get(VIRTUAL_KEY)
    if key is not None and not key.may_use(first.model):
        raise model_not_found(model)
    return first


async def count_upstream(request: web.Request, tenant: TenantConfig, channel: Candidate, messages_body: dict[str, Any],
                         headers: dict[str, str] | None = None) -> int:
    """The upstream's count of a Messages body, on a channel that declares counts_tokens; it
    costs the tenant one request of its request rates (the upstream's own rate limit is spent)."""
    await count_one_request(request, request.app[RUNTIME].current, tenant, channel.model)
    call = Call(messages_body, channel.upstream_model, request[REQUEST_ID], headers or {}, owner=tenant.name)
    return await cast(TokenCounter, channel.adaptor).count_tokens(call)


async def input_tokens(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant, body = await _request_body(request)
    body = {k: body[k] for k in COUNTED if k in body}
    first = counting_channel(request, tenant, body["model"])
    caps = first.adaptor.capabilities
    headers = {"x-relay-channel": first.channel.name}
    if caps.native_responses:  # sent as it is: a rough estimate from its JSON
        count = estimate_text(jsonfast.dumps({k: body.get(k) for k in ("input", "instructions", "tools")}).decode())
        headers["x-relay-estimate"] = "true"
    else:
        reject = rt.config.responses.unsupported_tools == "reject"
        chat = to_chat(body, reject_unsupported_tools=reject, keep_reasoning=caps.reasoning_items).chat
        if caps.counts_tokens:
            # TokenCounter takes a Messages body: the chat form as a Messages channel sends it
            # (the count endpoint drops max_tokens, so its default does not matter).
            count = await count_upstream(request, tenant, first, to_messages(chat, first.upstream_model, 1024).body)
        else:
            count, headers["x-relay-estimate"] = _estimate_chat(chat), "true"
    return json_response({"object": "response.input_tokens", "input_tokens": count}, headers=headers)


async def _summarise(call: ModelCall, candidates: list[Candidate], body: dict[str, Any]) -> tuple[str, Answer, ChatConversion]:
    """The routed model's summary of the conversation in `body` (model, input, instructions),
    the answer it came in, and the conversation's chat form."""
    # The bridge checks every item (a 400 names it) and reads Relay's earlier compactions.
    conv = to_chat(body)
    chat = summary_request(body["model"], conv.chat["messages"])

    def plan(candidate: Candidate) -> Attempt:
        return Attempt(chat)

    await call.admit(candidates[0].model, chat["messages"], None, False)
    answer = await call.dispatch(candidates, plan, False)
    assert answer.completion is not None  # the chat path, not streamed
    summary = summary_of(answer.completion)
    if not summary:
        raise upstream_bad_response(answer.candidate.channel.name, "the model wrote no summary of the conversation")
    return summary, answer, conv


async def compact(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant, body = await _request_body(request)
    body = {k: body[k] for k in SUMMARISED if k in body}
    candidates = rt.router.candidates(tenant, body["model"])
    async with ModelCall(request, rt, tenant, "responses") as call:
        summary, answer, _ = await _summarise(call, candidates, body)
        usage = answer.completion.get("usage") if answer.completion else None
        out = compacted_response(compacted_output(body["input"], summary),
                                 Usage.from_chat(usage if isinstance(usage, dict) else {}).responses(), int(time.time()))
        return call.json(out, usage, answer.headers())


async def compaction_turn(turn: Turn) -> web.StreamResponse:
    """`POST /v1/responses` whose input ends with a `compaction_trigger` (how Codex asks for
    server-side compaction): the answer is a Response whose one output item is the
    compaction of everything before the trigger; the client keeps its user messages itself."""
    body = {k: turn.body[k] for k in SUMMARISED if k in turn.body}
    body["input"] = turn.body["input"][:-1]
    async with ModelCall(turn.request, turn.rt, turn.tenant, "responses") as call:
        summary, answer, conv = await _summarise(call, turn.candidates, body)
        usage = answer.completion.get("usage") if answer.completion else None
        item = {"type": "compaction", "id": new_id("cmp_"), "encrypted_content": encode_summary(summary)}
        echo = {**conv.echo, **turn.prepared.echo}
        response = Envelope(turn.model, echo, turn.response_id).snapshot(
            "completed", [item], Usage.from_chat(usage if isinstance(usage, dict) else {}).responses())
        await turn.store(response, answer)
        if turn.body.get("stream") is not True:
            return call.json(response, usage, answer.headers())
        # Streamed: the lifecycle and the one item, whole.
        out = web.StreamResponse(headers={**SSE_HEADERS, **answer.headers(), **call.headers, "x-request-id": call.request_id})
        await out.prepare(turn.request)
        await write_events(out, replay_events(response))
        await out.write_eof()
        call.usage = usage if isinstance(usage, dict) else None
        return out
