"""GET / DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items, per tenant: another
tenant's id is not found (404), never forbidden."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..appkeys import RUNTIME
from ..conversation_items import check_include, presented
from ..httpio import json_response
from ..responses_writer import write_events
from .appkeys import RECORDS, RUNS
from .background import RUNNING, current, stop
from .background_stream import stream_to_client
from .eventlog import EventLog
from .pages import page
from .records import not_found
from .replay import replay_events


async def _record(request: web.Request) -> tuple[str, str, dict[str, Any]]:
    rt = request.app[RUNTIME].current
    tenant = rt.keys.authenticate(request)
    response_id = request.match_info["response_id"]
    record = await request.app[RECORDS].get(tenant.name, response_id)
    if record is None:
        raise not_found(response_id)
    return tenant.name, response_id, record


async def get_response(request: web.Request) -> web.StreamResponse:
    tenant, rid, record = await _record(request)
    response = await current(request, tenant, record)
    if request.query.get("stream") != "true":
        return json_response(response)
    keepalive = request.app[RUNTIME].current.config.server.sse_keepalive
    running = request.app[RUNS].logs.get(rid)
    if running is None:
        running = EventLog()
        await write_events(running, replay_events(response))
        running.close()
    return await stream_to_client(request, running, keepalive)


async def delete_response(request: web.Request) -> web.StreamResponse:
    tenant, response_id, record = await _record(request)
    if record["response"].get("status") in RUNNING:  # else its run would store it again when it ends
        await stop(request, tenant, response_id)
    if not await request.app[RECORDS].delete(tenant, response_id):
        raise not_found(response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def input_items(request: web.Request) -> web.StreamResponse:
    """The items are stored whole; `include` says which large or sensitive parts are shown
    (reasoning `encrypted_content`, logprobs, image URLs), as for conversation items."""
    include = check_include([*request.query.getall("include", []), *request.query.getall("include[]", [])])
    _, _, record = await _record(request)
    listing = page(record["items"], request.query)
    return json_response({**listing, "data": [presented(item, include) for item in listing["data"]]})
