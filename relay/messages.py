"""The Anthropic Messages API: POST /v1/messages (also `?beta=true`), POST
/v1/messages/count_tokens, Anthropic-shaped /v1/models, and the base URL probe.

Same path as the OpenAI endpoints (authenticate, validate, route, admit, dispatch, write,
account with api "messages"); answers and errors in Anthropic's shape. An anthropic channel
first in line takes the body untouched (passthrough); every other channel goes through the
Messages bridge (adaptors/messages).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError, bad_request
from relay_adaptors.messages import (
    MessagesConversion,
    MessagesStream,
    completion_to_message,
    error_body,
    estimate_input_tokens,
    model_info,
    model_page,
    prompt_messages,
    to_chat,
    validate_request,
)

from .appkeys import REQUEST_ID, RUNTIME
from .dispatch import Attempt
from .httpio import json_response, read_json
from .lifecycle import ModelCall
from .messages_stream import PING, MessagesTap, write_messages_stream
from .outcome import StreamOutcome
from .responses_extra import count_upstream, counting_channel
from .router import Candidate
from .sse_out import KeepaliveWriter
from .vkeys.limits import visible_models

log = logging.getLogger("relay")
# Client headers an anthropic channel gets (merged with its own, see AnthropicAdaptor).
FORWARDED = ("anthropic-version", "anthropic-beta")


def anthropic_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Errors before the first byte in Anthropic's shape, with a `request-id` header."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID]
        try:
            resp = await handler(request)
        except RelayError as e:
            return json_response(error_body(e, rid), e.status, {**e.headers, "request-id": rid})
        if not resp.prepared:
            resp.headers["request-id"] = rid
        return resp
    return wrapped


def _client_headers(request: web.Request, rid: str) -> dict[str, str]:
    headers = {"x-request-id": rid}
    for name in FORWARDED:
        if name in request.headers:
            headers[name] = request.headers[name]
    return headers


@anthropic_errors
async def messages(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_request(await read_json(request, rt.config.server.max_body_bytes))
    model = body["model"]
    candidates = rt.router.candidates(tenant, model)
    rid = request[REQUEST_ID]
    reject = rt.config.responses.unsupported_tools == "reject"
    by_reasoning: dict[bool, MessagesConversion] = {}

    def convert(candidate: Candidate) -> MessagesConversion:
        """The chat form for this channel (with or without replayed thinking), converted once each."""
        caps = candidate.adaptor.capabilities
        if body.get("tools") and not caps.client_tools:
            raise bad_request(f"tools: the channel serving '{model}' (type {candidate.channel.type}) cannot run "
                              "client tools; send the request without tools or use another model.", param="tools")
        if caps.reasoning_items not in by_reasoning:
            by_reasoning[caps.reasoning_items] = to_chat(body, reject_unsupported_tools=reject, keep_reasoning=caps.reasoning_items)
        return by_reasoning[caps.reasoning_items]

    def plan(candidate: Candidate) -> Attempt:
        if candidate.adaptor.capabilities.native_messages:  # same protocol: the body goes up untouched
            return Attempt(body, "native_messages", _client_headers(request, rid))
        return Attempt(convert(candidate).chat)

    # A request the bridge cannot take is a 400 here, before any upstream call.
    bridged = [c for c in candidates if not c.adaptor.capabilities.native_messages]
    first_conv = convert(bridged[0]) if bridged else None
    stream = body.get("stream") is True
    async with ModelCall(request, rt, tenant, "messages") as call:
        # The estimate the limits pre-check: the chat form when there is one, else the raw blocks.
        prompt = first_conv.chat["messages"] if first_conv is not None else prompt_messages(body)
        await call.admit(candidates[0].model, prompt, body["max_tokens"], stream)
        answer = await call.dispatch(candidates, plan, stream)
        channel = answer.candidate.channel.name
        headers = {**answer.headers(), "request-id": rid}
        if answer.raw is not None:
            return await call.relay(answer, lambda streaming, outcome: MessagesTap(streaming, outcome, channel, rid), headers)
        conv = convert(answer.candidate)
        if conv.ignored:
            ignored = set(conv.ignored) | set(filter(None, headers.get("x-relay-ignored-params", "").split(",")))
            headers["x-relay-ignored-params"] = ",".join(sorted(ignored))
        if conv.dropped_tools:
            headers["x-relay-dropped-tools"] = ",".join(sorted(set(conv.dropped_tools)))
            log.info("request %s: dropped tools the channel cannot run: %s", rid, headers["x-relay-dropped-tools"])
        if answer.completion is not None:
            usage = answer.completion.get("usage")
            return call.json(completion_to_message(answer.completion, model, conv.stop_sequences), usage, headers)
        machine = MessagesStream(model, conv.stop_sequences)
        stream_in = answer.stream
        assert stream_in is not None

        async def write(out: KeepaliveWriter, outcome: StreamOutcome) -> None:
            await write_messages_stream(out, stream_in, machine, outcome, rid, channel)

        return await call.stream(answer, write, headers, ping=PING)


@anthropic_errors
async def count_tokens(request: web.Request) -> web.StreamResponse:
    """Anthropic channels ask the upstream; other channels answer Relay's estimate (said so in
    `x-relay-estimate: true`)."""
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_request(await read_json(request, rt.config.server.max_body_bytes), need_max_tokens=False)
    first = counting_channel(request, tenant, body["model"])
    rid = request[REQUEST_ID]
    headers = {"x-relay-channel": first.channel.name}
    if first.adaptor.capabilities.counts_tokens:
        count = await count_upstream(request, tenant, first, body, _client_headers(request, rid))
    else:
        count, headers["x-relay-estimate"] = estimate_input_tokens(body), "true"
    return json_response({"input_tokens": count}, headers=headers)


def wants_anthropic(request: web.Request) -> bool:
    """Anthropic's SDKs and Claude Code always send anthropic-version; OpenAI's never do."""
    return "anthropic-version" in request.headers


@anthropic_errors
async def list_models(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    q = request.query
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise bad_request("limit: Input should be a valid integer", param="limit") from None
    if not 1 <= limit <= 1000:
        raise bad_request("limit: Input should be between 1 and 1000", param="limit")
    page = model_page(visible_models(request, rt.router, tenant), limit, q.get("after_id"), q.get("before_id"))
    return json_response(page)


@anthropic_errors
async def get_model(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    name = request.match_info["model"]
    if name not in visible_models(request, rt.router, tenant):  # another tenant's model is not found either
        raise RelayError(404, f"model: {name}", param="model", code="model_not_found")
    return json_response(model_info(name))


async def root(request: web.Request) -> web.Response:
    """The base URL: Claude Code probes it (HEAD, no key) at start-up."""
    body: dict[str, Any] = {"service": "relay", "status": "ok"}
    return json_response(body)
