"""Typed aiohttp keys for the state the application and its requests share (not API keys: see auth.py)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .breaker import Breakers
from .metrics import Metrics
from .runtime import Runtime
from .store import Store
from .thinking_memory import ThinkingMemory


@dataclass(slots=True)
class RuntimeHolder:
    """The runtime in force. Replaced whole on reload; a request reads it once and keeps it."""

    current: Runtime


RUNTIME = web.AppKey("runtime", RuntimeHolder)
SESSION = web.AppKey("session", aiohttp.ClientSession)
BREAKERS = web.AppKey("breakers", Breakers)  # outlive reloads: keyed by channel name
STORE = web.AppKey("store", Store)  # limits, budgets and the ledger; chosen at start (store.url)
BACKGROUND = web.AppKey("background", set[asyncio.Task[Any]])  # accounting tasks still running, awaited at shutdown
METRICS = web.AppKey("metrics", Metrics)
THINKING = web.AppKey("thinking", ThinkingMemory)  # signed thinking of tool turns, for chat clients that drop it
CONFIG_PATH = web.AppKey("config_path", Path)  # set when serving a file (enables reload)
REQUEST_ID = web.RequestKey("request_id", str)
ACCOUNTED = web.RequestKey("accounted", bool)  # a model call, logged by its accounting
