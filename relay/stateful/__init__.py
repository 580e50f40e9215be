"""Stateful Responses: stored responses, chains by `previous_response_id`, background
responses and conversations, kept per tenant in the usage store's documents."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from relay_adaptors.kernel.errors import bad_request
from relay_config.schema import TenantConfig


async def expand_history(request: web.Request, tenant: TenantConfig, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with `previous_response_id` / `conversation` replaced by the stored items they
    name, in order, followed by the body's own `input` (always a list then)."""
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise bad_request(f"'{key}' is not available yet.", param=key, code="unsupported_parameter")
    return body
