"""Resolves a virtual key before the handler runs, so every API authenticates it the same way
(relay.auth.KeyIndex then finds it on the request). YAML keys come first, as before."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError

from ..appkeys import METRICS, RUNTIME
from ..auth import digest, presented_key
from ..store import StoreError
from .appkeys import KEY_CACHE, KEYSTORE, VIRTUAL_KEY
from .model import could_be_secret

log = logging.getLogger("relay")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def virtual_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):  # the tenant APIs only: /admin/* never takes a tenant key
        await resolve(request)
    return await handler(request)


async def resolve(request: web.Request) -> None:
    secret = presented_key(request)
    # Only Relay's own format is looked up: any other unknown key is refused without a store round trip.
    if not secret or not could_be_secret(secret):  # junk never reaches the store nor evicts real keys from the cache
        return
    d = digest(secret)  # presented_key has refused a key that is not UTF-8 text
    if request.app[RUNTIME].current.keys.knows(d):
        return  # a YAML key
    cache = request.app[KEY_CACHE]
    try:
        key = await cache.lookup(d)
    except StoreError as e:
        request.app[METRICS].store_errors.labels("keys").inc()
        log.error("key store unavailable, cannot check a virtual key: %s", e)
        raise RelayError(503, "The gateway's key store is unavailable; retry shortly.", type="api_error",
                         code="store_unavailable", headers={"retry-after": "1"}) from None
    now = cache.clock()
    if key is not None and key.accepts(d, now):
        request[VIRTUAL_KEY] = key
        request.app[KEYSTORE].touch(key.id, now)
