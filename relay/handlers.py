"""HTTP endpoints. Each handler: authenticate, validate, route, call the adaptor, write."""
from __future__ import annotations

from aiohttp import web

import logging
from typing import Any

from adaptors.base import Call, NativeResponses
from adaptors.chat import validate_chat_request, wants_usage_chunk
from adaptors.errors import bad_request
from adaptors.responses import Envelope, ResponsesStream, completion_to_response, to_chat

from .chat_stream import StreamOutcome, write_chat_stream
from .httpio import json_response, read_json
from .keys import REQUEST_ID, RUNTIME
from .responses_stream import write_events, write_responses_stream

log = logging.getLogger("relay")

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_chat_request(await read_json(request, rt.config.server.max_body_bytes))
    candidate = rt.router.candidates(tenant, body["model"])[0]
    rid = request[REQUEST_ID]
    call = Call(body, candidate.upstream_model, rid, {"x-request-id": rid})
    headers = {"x-relay-channel": candidate.channel.name}
    if not body.get("stream"):
        result = await candidate.adaptor.complete(call)
        return json_response(result, headers=headers)

    stream = await candidate.adaptor.open_stream(call)
    try:
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await resp.prepare(request)
        await write_chat_stream(resp, stream, wants_usage_chunk(body), StreamOutcome())
        await resp.write_eof()
        return resp
    finally:
        await stream.aclose()


async def responses(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = await read_json(request, rt.config.server.max_body_bytes)
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'.", param="model")
    candidate = rt.router.candidates(tenant, model)[0]
    rid = request[REQUEST_ID]
    headers = {"x-relay-channel": candidate.channel.name}
    adaptor = candidate.adaptor
    if isinstance(adaptor, NativeResponses) and adaptor.native_responses:
        call = Call(body, candidate.upstream_model, rid, {"x-request-id": rid})
        return await _relay_native(request, adaptor, call, headers)

    conv = to_chat(
        body,
        reject_unsupported_tools=rt.config.responses.unsupported_tools == "reject",
        keep_reasoning=getattr(adaptor, "accepts_reasoning_items", False),
    )
    if conv.tools.dropped:
        dropped = ",".join(sorted(set(conv.tools.dropped)))
        headers["x-relay-dropped-tools"] = dropped
        log.info("request %s: dropped tools the channel cannot run: %s", rid, dropped)
    call = Call(conv.chat, candidate.upstream_model, rid, {"x-request-id": rid})
    envelope = Envelope(model, conv.echo)
    if not conv.stream:
        completion = await adaptor.complete(call)
        return json_response(completion_to_response(completion, envelope, conv.names), headers=headers)

    stream = await adaptor.open_stream(call)
    try:
        machine = ResponsesStream(envelope, conv.names)
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await resp.prepare(request)
        await write_events(resp, machine.start())
        await write_responses_stream(resp, stream, machine, StreamOutcome())
        await resp.write_eof()
        return resp
    finally:
        await stream.aclose()


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
