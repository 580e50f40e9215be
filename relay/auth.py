"""API key -> tenant, by sha256 digest lookup (no comparison loop over secrets)."""
from __future__ import annotations

import hashlib

from aiohttp import web

from adaptors.errors import RelayError
from config.schema import TenantConfig


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyIndex:
    def __init__(self, tenants: list[TenantConfig]):
        self._by_digest: dict[str, TenantConfig] = {}
        for t in tenants:
            for d in [digest(k) for k in t.keys] + list(t.key_sha256):
                other = self._by_digest.setdefault(d, t)
                if other is not t:
                    raise ValueError(f"tenants {other.name!r} and {t.name!r} share an API key")

    def authenticate(self, request: web.Request) -> TenantConfig:
        key = presented_key(request)
        if key is None:
            raise RelayError(
                401,
                "Missing API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
                code="missing_api_key",
            )
        tenant = self._by_digest.get(digest(key))
        if tenant is None:
            raise RelayError(401, "Incorrect API key provided.", code="invalid_api_key")
        return tenant


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
