"""Typed keys for state shared through the aiohttp application and requests."""
from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .runtime import Runtime


@dataclass(slots=True)
class RuntimeHolder:
    """The runtime in force. Replaced whole on reload; a request reads it once and keeps it."""

    current: Runtime


RUNTIME = web.AppKey("runtime", RuntimeHolder)
SESSION = web.AppKey("session", aiohttp.ClientSession)
REQUEST_ID = web.RequestKey("request_id", str)
