"""Typed keys for the virtual-key state shared through the application and requests."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .cache import KeyCache
from .model import VirtualKey
from .store import KeyStore

KEYSTORE = web.AppKey("vkeys_store", KeyStore)
KEY_CACHE = web.AppKey("vkeys_cache", KeyCache)
# Wall clock of expiry, rotation grace and the cache's ttl; tests inject one before start.
Clock = Callable[[], float]
KEY_CLOCK: web.AppKey[Clock] = web.AppKey("vkeys_clock")
VIRTUAL_KEY = web.RequestKey("virtual_key", VirtualKey)  # set when a virtual key authenticated the request
