"""HTTP endpoints. Each model call: authenticate, validate, route, admit, dispatch, write,
account (see accounting.py)."""
from __future__ import annotations

import logging
from typing import Any, cast

from aiohttp import web

from relay_adaptors.base import Call, NativeResponses, ProcessCounter
from relay_adaptors.chat import validate_chat_request, wants_usage_chunk
from relay_adaptors.errors import RelayError, bad_request
from relay_adaptors.responses import ChatConversion, Envelope, ResponsesStream, completion_to_response, to_chat

from prometheus_client import CONTENT_TYPE_LATEST

from . import messages as anthropic_api
from .accounting import accounting
from .auth import is_admin
from .metrics import exposition
from .chat_stream import StreamOutcome, write_chat_stream
from .dispatch import Health, dispatch
from .httpio import json_response, read_json
from .keys import BREAKERS, METRICS, REQUEST_ID, RUNTIME
from .native import relay_native
from .responses_stream import write_events, write_responses_stream
from .router import Candidate
from .runtime import Runtime
from .sse_out import KeepaliveWriter, stream_answer

log = logging.getLogger("relay")


def health(request: web.Request, rt: Runtime) -> Health:
    return Health(rt.config.router, request.app[BREAKERS], request.app[METRICS])


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_chat_request(await read_json(request, rt.config.server.max_body_bytes))
    stream = bool(body.get("stream"))
    candidates = rt.router.candidates(tenant, body["model"])
    async with accounting(request, rt, tenant, "chat") as acct:
        acct.stream = stream
        await acct.admit(body["model"], body["messages"], body.get("max_completion_tokens") or body.get("max_tokens"))
        answer = await dispatch(candidates, lambda _: body, request[REQUEST_ID], stream, health(request, rt))
        acct.channel, acct.attempts, acct.report = answer.candidate.channel.name, answer.attempts, answer.call.report
        headers = {**answer.headers(), **acct.headers}
        if not stream:
            acct.usage = answer.result.get("usage")
            return json_response(answer.result, headers=headers)
        include_usage = wants_usage_chunk(body)
        acct.outcome = StreamOutcome()
        return await stream_answer(
            request, answer, lambda out, outcome: write_chat_stream(out, answer.stream, include_usage, outcome),
            rt.config.server.sse_keepalive, headers, acct.outcome,
        )


async def responses(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = await read_json(request, rt.config.server.max_body_bytes)
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'.", param="model")
    candidates = rt.router.candidates(tenant, model)
    rid = request[REQUEST_ID]
    reject = rt.config.responses.unsupported_tools == "reject"
    by_reasoning: dict[bool, ChatConversion] = {}

    def convert(candidate: Candidate) -> ChatConversion:
        """The chat form of the request for this channel (two forms at most: with or without
        replayed reasoning items), each converted once."""
        keep = candidate.adaptor.capabilities.reasoning_items
        if keep not in by_reasoning:
            by_reasoning[keep] = to_chat(body, reject_unsupported_tools=reject, keep_reasoning=keep)
        return by_reasoning[keep]

    first = candidates[0]
    native = first.adaptor.capabilities.native_responses
    # A request the bridge cannot take is a 400 here, before any upstream call.
    conv = None if native else convert(first)
    async with accounting(request, rt, tenant, "responses") as acct:
        acct.stream = body.get("stream") is True
        messages = conv.chat["messages"] if conv else [{"content": body.get("input") if isinstance(body.get("input"), str) else ""}]
        await acct.admit(model, messages, body.get("max_output_tokens"))
        if native:
            acct.channel, acct.attempts = first.channel.name, 1
            call = Call(body, first.upstream_model, rid, {"x-request-id": rid})
            return await relay_native(request, cast(NativeResponses, first.adaptor), call, {"x-relay-channel": first.channel.name, **acct.headers}, acct)

        assert conv is not None
        answer = await dispatch(candidates, lambda c: convert(c).chat, rid, conv.stream, health(request, rt))
        acct.channel, acct.attempts, acct.report = answer.candidate.channel.name, answer.attempts, answer.call.report
        conv = convert(answer.candidate)
        headers = {**answer.headers(), **acct.headers}
        if conv.tools.dropped:
            headers["x-relay-dropped-tools"] = ",".join(sorted(set(conv.tools.dropped)))
            log.info("request %s: dropped tools the channel cannot run: %s", rid, headers["x-relay-dropped-tools"])
        envelope = Envelope(model, conv.echo)
        if not conv.stream:
            acct.usage = answer.result.get("usage")
            return json_response(completion_to_response(answer.result, envelope, conv.names), headers=headers)
        machine = ResponsesStream(envelope, conv.names)

        async def write(out: KeepaliveWriter, outcome: StreamOutcome) -> None:
            await write_events(out, machine.start())
            await write_responses_stream(out, answer.stream, machine, outcome)

        acct.outcome = StreamOutcome()
        return await stream_answer(request, answer, write, rt.config.server.sse_keepalive, headers, acct.outcome)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "relay"}


async def list_models(request: web.Request) -> web.StreamResponse:
    if anthropic_api.wants_anthropic(request):
        return await anthropic_api.list_models(request)
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    return json_response({"object": "list", "data": [_model(m) for m in rt.router.models_for(tenant)]})


async def get_model(request: web.Request) -> web.StreamResponse:
    if anthropic_api.wants_anthropic(request):
        return await anthropic_api.get_model(request)
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    name = request.match_info["model"]
    if name not in rt.router.models_for(tenant):  # another tenant's model is not found either
        raise RelayError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
    return json_response(_model(name))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    holder = request.app.get(RUNTIME)
    if holder is None or holder.current is None:
        return json_response({"status": "not ready"}, status=503)
    return json_response({"status": "ready", "channels": len(holder.current.config.channels)})


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME].current
    token = rt.config.server.metrics_token
    if token and not is_admin(request, token):
        raise RelayError(401, "GET /metrics needs the server's metrics_token as a Bearer token.", code="invalid_metrics_token")
    m = request.app[METRICS]
    breakers = request.app[BREAKERS]
    for ch, adaptor in rt.channels:
        m.channel_up.labels(ch.name).set(1 if breakers.is_up(ch.name) else 0)
        if adaptor.capabilities.counts_processes:
            m.cli_processes.labels(ch.name).set(cast(ProcessCounter, adaptor).running)
    return web.Response(body=exposition(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
