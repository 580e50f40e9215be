"""Typed aiohttp keys of the stateful Responses state."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .records import ResponseRecords

if TYPE_CHECKING:
    from .background import Runs

RECORDS = web.AppKey("response_records", ResponseRecords)  # stored responses, per tenant
RUNS: web.AppKey[Runs] = web.AppKey("background_runs")  # background responses this process runs
