"""Conversations kept in the store's tenant-owned documents.

One document per conversation (`conversation:<id>`): its id, creation time, metadata and
ordered items. Every change rewrites the document and restarts its retention, so a
conversation expires `retention` seconds after its last change. A change that would make the
document larger than `max_bytes` is refused (413 naming what made it too large; nothing is
written).

Changes to one conversation are serialized in this process (a lock per conversation, so an
append never loses another's items). Across instances sharing a store there is no lock:
two instances changing the same conversation at the same moment race, and the last write
wins (the other's items are lost). Relay's own appends are one per completed response, so
this only happens when one conversation is driven from several instances at once.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.ids import new_id

from .conversation_items import CONVERSATION_PREFIX, check_conversation_id, new_items, not_found
from .store import Store, StoreError


def _key(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class _Locks:
    """One asyncio lock per key while anyone holds or waits for it (then forgotten)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Conversations:
    """What the Conversations endpoints and POST /v1/responses (`conversation`) do with the
    store. `param` names the request field that named the conversation in every 404/400."""

    def __init__(self, store: Store, retention: float, max_bytes: int):
        self.store = store
        self.retention = retention
        self.max_bytes = max_bytes
        self.locks = _Locks()

    # --- the interface of POST /v1/responses --------------------------------------------
    async def items(self, tenant: str, conversation_id: str, param: str = "conversation") -> list[dict[str, Any]]:
        """The conversation's items in order, as Responses input items (everything kept,
        reasoning's encrypted_content included)."""
        doc = await self.get(tenant, conversation_id, param)
        return list(doc["items"])

    async def append(self, tenant: str, conversation_id: str, items: list[dict[str, Any]], param: str = "conversation") -> None:
        """Adds a response's input and output items at the end. Items without a valid id, or
        with one the conversation already has, get a new Relay id. Item errors name
        `conversation[i]...` (i indexes `items`); check a request's input beforehand with
        conversation_items.new_items(input, "input", set(), reassign_taken=True)."""
        await self.add_items(tenant, conversation_id, items, param, items_param=param, reassign_taken=True)

    # --- the endpoints ------------------------------------------------------------------
    async def create(self, tenant: str, metadata: dict[str, str], items: list[Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": new_id(CONVERSATION_PREFIX), "created_at": int(time.time()),
                               "metadata": metadata, "items": new_items(items, "items", set(), reassign_taken=False)}
        await self._put(tenant, doc, "items")
        return doc

    async def get(self, tenant: str, conversation_id: str, param: str = "conversation_id") -> dict[str, Any]:
        check_conversation_id(conversation_id, param)
        raw = await self._call(self.store.doc_get(tenant, _key(conversation_id)))
        if raw is None:
            raise not_found("Conversation", conversation_id, param)
        doc: dict[str, Any] = jsonfast.loads(raw)
        return doc

    async def set_metadata(self, tenant: str, conversation_id: str, metadata: dict[str, str]) -> dict[str, Any]:
        async with self.locks.hold((tenant, conversation_id)):
            doc = await self.get(tenant, conversation_id)
            doc["metadata"] = metadata
            await self._put(tenant, doc, "metadata")
        return doc

    async def delete(self, tenant: str, conversation_id: str) -> None:
        check_conversation_id(conversation_id, "conversation_id")
        async with self.locks.hold((tenant, conversation_id)):
            if not await self._call(self.store.doc_delete(tenant, _key(conversation_id))):
                raise not_found("Conversation", conversation_id, "conversation_id")

    async def add_items(self, tenant: str, conversation_id: str, items: list[Any], param: str = "conversation_id", *,
                        items_param: str = "items", reassign_taken: bool = False) -> list[dict[str, Any]]:
        """The items as stored (with their ids), after adding them at the end."""
        async with self.locks.hold((tenant, conversation_id)):
            doc = await self.get(tenant, conversation_id, param)
            taken = {item["id"] for item in doc["items"]}
            added = new_items(items, items_param, taken, reassign_taken=reassign_taken)
            doc["items"].extend(added)
            await self._put(tenant, doc, items_param)
        return added

    async def delete_item(self, tenant: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        """The conversation after removing the item (what OpenAI answers)."""
        async with self.locks.hold((tenant, conversation_id)):
            doc = await self.get(tenant, conversation_id)
            kept = [item for item in doc["items"] if item["id"] != item_id]
            if len(kept) == len(doc["items"]):
                raise not_found("Item", item_id, "item_id")
            doc["items"] = kept
            await self._put(tenant, doc, "item_id")
        return doc

    async def _put(self, tenant: str, doc: dict[str, Any], param: str) -> None:
        raw = jsonfast.dumps(doc)
        if len(raw) > self.max_bytes:
            raise RelayError(413, f"The conversation would hold {len(raw)} bytes, more than the {self.max_bytes} bytes "
                             "Relay stores per conversation (responses.max_stored_bytes); start a new conversation "
                             "or delete items.", param=param, code="conversation_too_large")
        await self._call(self.store.doc_put(tenant, _key(doc["id"]), raw.decode(), self.retention))

    @staticmethod
    async def _call(op: Any) -> Any:
        try:
            return await op
        except StoreError:
            raise RelayError(503, "The conversation store is unavailable; try again shortly.", type="server_error",
                             code="store_unavailable") from None
