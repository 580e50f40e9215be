"""Stored responses: one document per response in the usage store, owned by its tenant.

A record holds the Response object as `GET /v1/responses/{id}` returns it, every item that
went into it (`items`: the chain before it, then its own input, as listed by
`/input_items`), the channel that answered (and the upstream session it left, for channels
that resume sessions), and for background responses who runs it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from relay_adaptors.kernel.errors import RelayError

from ..store import Store, StoreError

log = logging.getLogger("relay")
SWEEP_EVERY = 600.0  # seconds between removals of expired documents

KEY = "resp:"
_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,59}")


@dataclass(slots=True)
class ResponseRecords:
    store: Store
    retention: float  # seconds a stored response is kept
    max_bytes: int  # one stored response, history included

    async def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        if not _plausible(response_id):
            return None
        try:
            raw = await self.store.doc_get(tenant, KEY + response_id)
        except StoreError as e:
            raise unavailable() from e
        return json.loads(raw) if raw is not None else None

    async def put(self, tenant: str, record: dict[str, Any]) -> None:
        """Raises StoreError when the store does not answer: callers that answer anyway log it."""
        raw = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        if len(raw.encode()) > self.max_bytes:
            raise too_large(self.max_bytes)
        await self.store.doc_put(tenant, KEY + record["response"]["id"], raw, self.retention)

    async def delete(self, tenant: str, response_id: str) -> bool:
        try:
            return _plausible(response_id) and await self.store.doc_delete(tenant, KEY + response_id)
        except StoreError as e:
            raise unavailable() from e

    def fits(self, items: list[dict[str, Any]]) -> None:
        """Refuses, before any upstream call, a request whose stored history alone would not fit."""
        if len(json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()) > self.max_bytes:
            raise too_large(self.max_bytes)


def _plausible(response_id: str) -> bool:
    """Relay's own ids only: anything else is not looked up (and never reaches a key)."""
    return _ID.fullmatch(response_id) is not None


def too_large(limit: int) -> RelayError:
    return RelayError(413, f"This response cannot be stored: with its history it would exceed the gateway's "
                      f"{limit} bytes per stored response (responses.max_stored_bytes). Send it with "
                      "'store': false, or start a new chain.", param="input", code="stored_response_too_large")


def unavailable() -> RelayError:
    """A store that does not answer: the client may retry (a 503, never a 500)."""
    return RelayError(503, "The gateway's response store is unavailable; retry shortly.", type="api_error",
                      code="store_unavailable", headers={"retry-after": "1"})


def not_found(response_id: str, param: str | None = None) -> RelayError:
    shown = response_id if len(response_id) <= 64 else response_id[:64] + "..."
    return RelayError(404, f"Response with id '{shown}' not found.", param=param, code="response_not_found")


async def sweep_expired(store: Store, every: float = SWEEP_EVERY) -> None:
    """Removes expired stored responses and conversations now and then (Redis expires them
    by itself; SQLite keeps rows until removed)."""
    while True:
        try:
            if gone := await store.doc_sweep():
                log.info("removed %d expired stored responses and conversations", gone)
        except StoreError as e:
            log.warning("could not remove expired stored responses: %s", e)
        await asyncio.sleep(every)
