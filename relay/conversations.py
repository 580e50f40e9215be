"""The Conversations API (/v1/conversations...), per tenant, from Relay's own store.

Shapes are OpenAI's: `conversation`, `conversation.deleted`, item lists as `list` objects
with `first_id` / `last_id` / `has_more`. Another tenant's conversation is simply not in
this tenant's documents, so it is a 404 like an unknown id.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from relay_adaptors.kernel.errors import bad_request
from relay_config.schema import ResponsesConfig

from .appkeys import RUNTIME, STORE
from .conversation_items import (
    check_include,
    check_item_id,
    check_metadata,
    check_new_items,
    not_found,
    presented,
)
from .conversation_store import Conversations
from .httpio import json_response, read_json
from .stateful.pages import MAX_LIMIT, page

CONVERSATIONS = web.AppKey("conversations", Conversations)


def context(settings: ResponsesConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx appended after the store's: the conversations live (with their locks)
    as long as the app."""

    async def conversations(app: web.Application) -> AsyncIterator[None]:
        app[CONVERSATIONS] = Conversations(app[STORE], settings.retention, settings.max_stored_bytes)
        yield

    return conversations


def conversations_of(request: web.Request) -> Conversations:
    """The app's conversations, with the retention and size cap of the config in force."""
    convs = request.app[CONVERSATIONS]
    settings = request.app[RUNTIME].current.config.responses
    convs.retention, convs.max_bytes = settings.retention, settings.max_stored_bytes
    return convs


def _resource(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["id"], "object": "conversation", "created_at": doc["created_at"], "metadata": doc["metadata"]}


async def _body(request: web.Request, known: tuple[str, ...], *, optional: bool = False) -> dict[str, Any]:
    rt = request.app[RUNTIME].current
    if optional and not request.can_read_body:
        return {}
    body = await read_json(request, rt.config.server.max_body_bytes)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_type")
    for key in body:
        if key not in known:
            raise bad_request(f"Unknown parameter: '{key[:64]}'.", param=key[:64], code="unknown_parameter")
    return body


def _include(request: web.Request) -> frozenset[str]:
    # The SDKs send arrays as include[]=a&include[]=b; plain repeated include=a works too.
    return check_include([*request.query.getall("include", []), *request.query.getall("include[]", [])])


def _tenant(request: web.Request) -> str:
    return request.app[RUNTIME].current.keys.authenticate(request).name


async def create_conversation(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    body = await _body(request, ("metadata", "items"), optional=True)
    metadata = check_metadata(body.get("metadata"))
    items = check_new_items(body["items"]) if body.get("items") is not None else []
    doc = await conversations_of(request).create(tenant, metadata, items)
    return json_response(_resource(doc))


async def get_conversation(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    doc = await conversations_of(request).get(tenant, request.match_info["conversation_id"])
    return json_response(_resource(doc))


async def update_conversation(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    body = await _body(request, ("metadata",))
    if "metadata" not in body:
        raise bad_request("Missing required parameter: 'metadata'.", param="metadata", code="missing_required_parameter")
    doc = await conversations_of(request).set_metadata(tenant, request.match_info["conversation_id"], check_metadata(body["metadata"]))
    return json_response(_resource(doc))


async def delete_conversation(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    conversation_id = request.match_info["conversation_id"]
    await conversations_of(request).delete(tenant, conversation_id)
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


async def list_items(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    include = _include(request)
    doc = await conversations_of(request).get(tenant, request.match_info["conversation_id"])
    listing = page(doc["items"], request.query)
    return json_response({**listing, "data": [presented(item, include) for item in listing["data"]]})


async def create_items(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    include = _include(request)
    body = await _body(request, ("items",))
    if body.get("items") is None:
        raise bad_request("Missing required parameter: 'items'.", param="items", code="missing_required_parameter")
    added = await conversations_of(request).add_items(tenant, request.match_info["conversation_id"], check_new_items(body["items"]))
    return json_response(page([presented(item, include) for item in added], {"order": "asc", "limit": str(MAX_LIMIT)}))


async def get_item(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    include = _include(request)
    item_id = check_item_id(request.match_info["item_id"], "item_id")
    doc = await conversations_of(request).get(tenant, request.match_info["conversation_id"])
    for item in doc["items"]:
        if item["id"] == item_id:
            return json_response(presented(item, include))
    raise not_found("Item", item_id, "item_id")


async def delete_item(request: web.Request) -> web.Response:
    tenant = _tenant(request)
    item_id = check_item_id(request.match_info["item_id"], "item_id")
    doc = await conversations_of(request).delete_item(tenant, request.match_info["conversation_id"], item_id)
    return json_response(_resource(doc))


ROUTES = (
    ("POST", "/v1/conversations", create_conversation),
    ("GET", "/v1/conversations/{conversation_id}", get_conversation),
    ("POST", "/v1/conversations/{conversation_id}", update_conversation),
    ("DELETE", "/v1/conversations/{conversation_id}", delete_conversation),
    ("GET", "/v1/conversations/{conversation_id}/items", list_items),
    ("POST", "/v1/conversations/{conversation_id}/items", create_items),
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}", get_item),
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}", delete_item),
)
