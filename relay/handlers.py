"""HTTP endpoints. Each model call: authenticate, validate, route, then one lifecycle object
(relay.lifecycle.ModelCall) admits it, dispatches it, writes the answer and accounts for it."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from relay_adaptors.kernel.base import ProcessCounter
from relay_adaptors.kernel.chat import max_output_tokens, validate_chat_request, wants_usage_chunk
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.sse import KEEPALIVE

from . import messages as anthropic_api
from .appkeys import BREAKERS, METRICS, RUNTIME, STORE, THINKING
from .auth import is_admin
from .chat_tap import ChatTap
from .chat_writer import write_chat_stream
from .dispatch import Attempt
from .httpio import json_response, read_json
from .lifecycle import ModelCall
from .metrics import exposition
from .ops import require_ops_surface
from .router import Candidate
from .store import StoreError
from .vkeys.limits import visible_models

log = logging.getLogger("relay")
READY_STORE_TIMEOUT = 2.5  # seconds; below the readiness probe's timeout in deploy/kubernetes


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    body = validate_chat_request(await read_json(request, rt.config.server.max_body_bytes))
    stream = bool(body.get("stream"))
    candidates = rt.router.candidates(tenant, body["model"])
    memory = request.app[THINKING]
    thinking = body.get("reasoning_effort") not in (None, "none")
    # Thinking a chat client dropped from its tool turns, put back for channels that need it.
    restored = await memory.restore(tenant.name, body["messages"]) if thinking else None
    with_thinking = {**body, "messages": restored} if restored is not None else body

    def plan(candidate: Candidate) -> Attempt:
        caps = candidate.adaptor.capabilities
        if caps.reasoning_items:
            return Attempt(with_thinking)
        # Same protocol both sides: the upstream's own frames, renamed and read on the side.
        return Attempt(body, "native_chat" if stream and caps.native_chat else "chat")

    async with ModelCall(request, rt, tenant, "chat") as call:
        await call.admit(candidates[0].model, body["messages"], max_output_tokens(body), stream)
        answer = await call.dispatch(candidates, plan, stream)
        model = body["model"]  # every answer names the model the client asked for
        remember = thinking and answer.candidate.adaptor.capabilities.reasoning_items
        if answer.completion is not None:
            answer.completion["model"] = model
            if remember:
                await memory.remember_completion(tenant.name, answer.completion)
            return call.json(answer.completion, answer.completion.get("usage"), answer.headers())
        include_usage = wants_usage_chunk(body)
        if (raw := answer.raw) is not None:
            channel = answer.candidate.channel.name
            return await call.relay(answer, lambda _sse, outcome: ChatTap(outcome, model, include_usage, channel, raw),
                                    answer.headers(), ping=KEEPALIVE)
        if remember and answer.stream is not None:
            answer.stream = memory.watch(tenant.name, answer.stream)
        stream_out = answer.stream
        assert stream_out is not None
        return await call.stream(
            answer, lambda out, outcome: write_chat_stream(out, stream_out, include_usage, outcome, model), answer.headers())


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "relay"}


async def list_models(request: web.Request) -> web.StreamResponse:
    if anthropic_api.wants_anthropic(request):
        return await anthropic_api.list_models(request)
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    return json_response({"object": "list", "data": [_model(m) for m in visible_models(request, rt.router, tenant)]})


async def get_model(request: web.Request) -> web.StreamResponse:
    if anthropic_api.wants_anthropic(request):
        return await anthropic_api.get_model(request)
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    name = request.match_info["model"]
    if name not in visible_models(request, rt.router, tenant):  # another tenant's model is not found either
        raise RelayError(404, f"The model '{name}' does not exist.", param="model", code="model_not_found")
    return json_response(_model(name))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when a config is loaded and the store answers; with `store.on_error: fail_open`
    an unreachable store does not take the instance out of rotation (it admits anyway)."""
    holder = request.app.get(RUNTIME)
    if holder is None or holder.current is None:
        return json_response({"status": "not ready", "reason": "no config loaded yet"}, status=503)
    config = holder.current.config
    try:
        await asyncio.wait_for(request.app[STORE].ping(), READY_STORE_TIMEOUT)
        store = "ok"
    except (StoreError, TimeoutError) as e:
        reason = f"store unreachable: {e}" if isinstance(e, StoreError) else f"store did not answer within {READY_STORE_TIMEOUT}s"
        if config.store.on_error != "fail_open":
            return json_response({"status": "not ready", "reason": reason}, status=503)
        store = f"{reason} (store.on_error: fail_open, so requests are admitted without limits)"
    return json_response({"status": "ready", "config": "loaded", "store": store, "channels": len(config.channels)})


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME].current
    require_ops_surface(request)
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
