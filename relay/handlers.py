"""HTTP endpoints. Each handler: authenticate, validate, route, call the adaptor, write."""
from __future__ import annotations

from aiohttp import web

from adaptors.base import Call
from adaptors.chat import validate_chat_request, wants_usage_chunk

from .chat_stream import StreamOutcome, write_chat_stream
from .httpio import json_response, read_json
from .keys import REQUEST_ID, RUNTIME

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
