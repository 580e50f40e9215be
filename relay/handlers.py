"""HTTP endpoints. Each handler: authenticate, validate, route, call the adaptor, write."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from adaptors.base import Call, NativeResponses
from adaptors.chat import validate_chat_request, wants_usage_chunk
from adaptors.errors import bad_request
from adaptors.responses import ChatConversion, Envelope, ResponsesStream, completion_to_response, to_chat

from .chat_stream import StreamOutcome, write_chat_stream
from .dispatch import dispatch
from .httpio import json_response, read_json
from .keys import BREAKERS, REQUEST_ID, RUNTIME
from .responses_stream import write_events, write_responses_stream
from .router import Candidate
from .sse_out import SSE_HEADERS, KeepaliveWriter, stream_answer

log = logging.getLogger("relay")

async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_chat_request(await read_json(request, rt.config.server.max_body_bytes))
    candidates = rt.router.candidates(tenant, body["model"])
    stream = bool(body.get("stream"))
    answer = await dispatch(candidates, lambda _: body, request[REQUEST_ID], stream, rt.config.router, request.app[BREAKERS])
    if not stream:
        return json_response(answer.result, headers=answer.headers())
    include_usage = wants_usage_chunk(body)
    return await stream_answer(
        request, answer, lambda out, outcome: write_chat_stream(out, answer.stream, include_usage, outcome),
        rt.config.server.sse_keepalive,
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
    first = candidates[0].adaptor
    if isinstance(first, NativeResponses) and first.native_responses:
        call = Call(body, candidates[0].upstream_model, rid, {"x-request-id": rid})
        return await _relay_native(request, first, call, {"x-relay-channel": candidates[0].channel.name})

    reject = rt.config.responses.unsupported_tools == "reject"
    conversions: dict[str, ChatConversion] = {}

    def build(candidate: Candidate) -> dict[str, Any]:
        keep = getattr(candidate.adaptor, "accepts_reasoning_items", False)
        conv = to_chat(body, reject_unsupported_tools=reject, keep_reasoning=keep)
        conversions[candidate.channel.name] = conv
        return conv.chat

    build(candidates[0])  # a request the bridge cannot take fails here, before any upstream call
    conv = next(iter(conversions.values()))
    answer = await dispatch(candidates, build, rid, conv.stream, rt.config.router, request.app[BREAKERS])
    conv = conversions[answer.candidate.channel.name]
    headers = answer.headers()
    if conv.tools.dropped:
        headers["x-relay-dropped-tools"] = ",".join(sorted(set(conv.tools.dropped)))
        log.info("request %s: dropped tools the channel cannot run: %s", rid, headers["x-relay-dropped-tools"])
    envelope = Envelope(model, conv.echo)
    if not conv.stream:
        return json_response(completion_to_response(answer.result, envelope, conv.names), headers=headers)
    machine = ResponsesStream(envelope, conv.names)

    async def write(out: KeepaliveWriter, outcome: StreamOutcome) -> None:
        await write_events(out, machine.start())
        await write_responses_stream(out, answer.stream, machine, outcome)

    return await stream_answer(request, answer, write, rt.config.server.sse_keepalive, headers)


async def _relay_native(request: web.Request, adaptor: Any, call: Call, headers: dict[str, str]) -> web.StreamResponse:
    """`responses: native`: the upstream speaks Responses; bytes are relayed as they come."""
    upstream = await adaptor.responses_passthrough(call)
    try:
        resp = web.StreamResponse(status=upstream.status, headers={"Content-Type": upstream.content_type, **headers})
        if upstream.content_type.startswith("text/event-stream"):
            resp.headers.update({k: v for k, v in SSE_HEADERS.items() if k != "Content-Type"})
        await resp.prepare(request)
        async for data in upstream.chunks:
            await resp.write(data)
        await resp.write_eof()
        return resp
    finally:
        await upstream.chunks.aclose()


async def list_models(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    models = rt.router.models_for(tenant)
    return json_response(
        {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "relay"} for m in models]}
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    holder = request.app.get(RUNTIME)
    if holder is None or holder.current is None:
        return json_response({"status": "not ready"}, status=503)
    return json_response({"status": "ready", "channels": len(holder.current.config.channels)})
