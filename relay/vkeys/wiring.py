"""Puts virtual keys into the gateway app: the key store (opened from `store.url`), the cache,
the middleware, the admin routes, and the check that no key is both in the YAML and the store."""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from relay_config.schema import RelayConfig

from ..auth import KeyIndex
from ..store import StoreError
from . import admin_api
from .appkeys import KEY_CACHE, KEY_CLOCK, KEYSTORE
from .cache import KeyCache
from .middleware import virtual_keys
from .store import KeyStore, open_key_store

log = logging.getLogger("relay")


class KeyConflict(RuntimeError):
    """A key is in the YAML and in the key store: which tenant it means would be ambiguous."""


def conflicts(store: KeyStore, config: RelayConfig) -> list[str]:
    """One message per virtual key whose secret is also a YAML key (names ids, never secrets)."""
    owners = store.owners_now(KeyIndex(config.tenants).digests())
    return [f"virtual key {key_id} is also configured in the YAML (tenants[].keys / key_sha256): "
            "remove it from one of the two" for key_id in sorted(set(owners.values()))]


def install(app: web.Application, config: RelayConfig) -> None:
    app.middlewares.append(virtual_keys)
    admin_api.add_routes(app.router)

    async def key_store(app: web.Application) -> AsyncIterator[None]:
        store = open_key_store(config.store.url)
        await store.start()
        try:
            found = conflicts(store, config)
        except StoreError as e:  # Redis may come later; a reload checks again
            log.warning("could not check virtual keys against the YAML keys: %s", e)
            found = []
        if found:
            await store.close()
            raise KeyConflict("; ".join(found))
        clock = app.get(KEY_CLOCK, time.time)
        app[KEY_CLOCK] = clock
        app[KEYSTORE] = store
        app[KEY_CACHE] = KeyCache(store, clock)
        yield
        await store.close()

    app.cleanup_ctx.append(key_store)
