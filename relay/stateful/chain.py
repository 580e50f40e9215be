"""The stored state a Responses request names (`previous_response_id`, `conversation`),
resolved into its `input` before any channel sees it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from relay_adaptors.kernel.errors import bad_request
from relay_adaptors.responses.items import output_items, replayed, stored_input
from relay_adaptors.responses.request import convert_input
from relay_adaptors.responses.tools import ToolNames
from relay_adaptors.responses.validate import check_call_outputs
from relay_config.schema import TenantConfig

from ..conversations import conversations_of
from .appkeys import RECORDS
from .records import ResponseRecords, not_found

STATE_FIELDS = ("previous_response_id", "conversation", "background")  # resolved here, never sent upstream


@dataclass(slots=True)
class Prepared:
    """A Responses request with its stored state resolved."""

    body: dict[str, Any]  # what channels get: `input` is the whole history, then the request's own
    items: list[dict[str, Any]]  # the same items as stored and listed (with ids)
    history: int  # how many of `items` came from the stored state
    store: bool
    background: bool
    echo: dict[str, Any] = field(default_factory=dict)  # what the Response repeats of it
    previous: dict[str, Any] | None = None  # the record continued, if any
    conversation: str | None = None
    compaction: bool = False  # the input ended with a compaction_trigger: the answer is the compaction


async def prepare(request: web.Request, tenant: TenantConfig, body: dict[str, Any]) -> Prepared:
    records: ResponseRecords = request.app[RECORDS]
    prev_id, conversation = body.get("previous_response_id"), body.get("conversation")
    if prev_id is not None and conversation is not None:
        raise bad_request("'previous_response_id' and 'conversation' cannot be used together.", param="conversation")
    store = body.get("store") is not False
    background = body.get("background") is True
    if background and not store:
        raise bad_request("Background responses must be stored: drop 'store': false.", param="background")
    history: list[dict[str, Any]] = []
    previous = None
    if prev_id is not None:
        previous = await records.get(tenant.name, prev_id)
        if previous is None:
            raise not_found(prev_id, "previous_response_id")
        if previous["response"]["status"] in ("queued", "in_progress"):
            raise bad_request(f"Response '{prev_id}' is still {previous['response']['status']}; continue it once it has finished.",
                              param="previous_response_id")
        history = previous["items"] + output_items(previous["response"])
    conv_id = _conversation_id(conversation)
    if conv_id is not None:
        history = await conversations_of(request).items(tenant.name, conv_id)
    raw = body.get("input")
    # A trailing compaction_trigger asks for this turn's kind of answer: it is no item to store or replay.
    marker: list[Any] = []
    if isinstance(raw, list) and raw and isinstance(raw[-1], dict) and raw[-1].get("type") == "compaction_trigger":
        raw, marker = raw[:-1], raw[-1:]
    if raw is None and not history:
        raise bad_request("Missing required parameter: 'input'.", param="input")
    if isinstance(raw, list) and history:
        raw = resolve_references(raw, history)
        convert_input(raw, ToolNames(), keep_reasoning=False)  # errors name its own indices
        check_call_outputs(raw, {i["call_id"] for i in history if i.get("type") == "function_call" and "call_id" in i})
    # The request's own items in their listed shape: for a stored response, a conversation, or
    # a history they follow; a lone `store: false` turn needs none.
    keeps = store or conv_id is not None or bool(history)
    own = stored_input(raw if raw is not None else [], {i["id"] for i in history if isinstance(i.get("id"), str)}) if keeps else []
    items = history + own
    if store:
        records.fits(items)
    out = {k: v for k, v in body.items() if k not in STATE_FIELDS}
    if raw is not None and raw is not body.get("input"):
        out["input"] = raw + marker
    if history:
        out["input"] = replayed(items) + marker
    echo: dict[str, Any] = {"previous_response_id": prev_id, "background": background, "store": store}
    if conv_id is not None:
        echo["conversation"] = {"id": conv_id}
    return Prepared(out, items, len(history), store, background, echo, previous, conv_id, bool(marker))


async def expand_history(request: web.Request, tenant: TenantConfig, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with `previous_response_id` / `conversation` replaced by the stored items they
    name, in order, followed by the body's own `input`."""
    return (await prepare(request, tenant, {**body, "store": False, "background": False})).body


def _conversation_id(conversation: Any) -> str | None:
    if conversation is None:
        return None
    conv_id = conversation.get("id") if isinstance(conversation, dict) else conversation
    if not isinstance(conv_id, str) or not conv_id:
        raise bad_request("Invalid value for 'conversation': expected a conversation id or {\"id\": ...}.", param="conversation")
    return conv_id


def resolve_references(raw: list[Any], history: list[dict[str, Any]]) -> list[Any]:
    """`item_reference` items that name an item of the stored history, replaced by it (the
    rest are left for the bridge, which names them in a 400)."""
    if not any(isinstance(i, dict) and i.get("type") == "item_reference" for i in raw):
        return raw
    by_id = {i["id"]: i for i in history if isinstance(i.get("id"), str)}

    def resolved(item: Any) -> Any:
        found = by_id.get(item.get("id")) if isinstance(item, dict) and item.get("type") == "item_reference" else None
        return item if found is None else {k: v for k, v in found.items() if k != "id"}  # a new item: ids stay unique

    return [resolved(i) for i in raw]
