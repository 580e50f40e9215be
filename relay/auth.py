"""API key -> tenant, by sha256 digest lookup (no comparison loop over secrets)."""
from __future__ import annotations

import functools
import hashlib
import hmac

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import TenantConfig


@functools.lru_cache(maxsize=4096)
def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyIndex:
    def __init__(self, tenants: list[TenantConfig]):
        self._by_digest: dict[str, TenantConfig] = {}
        self._by_name = {t.name: t for t in tenants}
        for t in tenants:
            for d in [digest(k) for k in t.keys] + list(t.key_sha256):
                self._by_digest[d] = t  # the schema rejects a key shared by two tenants

    def authenticate(self, request: web.Request) -> TenantConfig:
        key = presented_key(request)
        if key is None:
            raise RelayError(
                401,
                "Missing API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
                code="missing_api_key",
            )
        tenant = self._by_digest.get(digest(key)) or self.virtual_tenant(request)
        if tenant is None:
            raise RelayError(401, "Incorrect API key provided.", code="invalid_api_key")
        return tenant

    # --- virtual keys (relay.vkeys) ----------------------------------------------------------
    def knows(self, key_digest: str) -> bool:
        """Whether the YAML holds the key with this digest (YAML keys win over virtual ones)."""
        return key_digest in self._by_digest

    def digests(self) -> set[str]:
        return set(self._by_digest)

    def virtual_tenant(self, request: web.Request) -> TenantConfig | None:
        """The tenant of the virtual key relay.vkeys.middleware found on this request, while
        that tenant is still in the config."""
        from .vkeys.appkeys import VIRTUAL_KEY

        key = request.get(VIRTUAL_KEY)
        return self._by_name.get(key.tenant) if key is not None else None


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return _text_key(value.strip(), "authorization")
    key = request.headers.get("x-api-key")
    return _text_key(key.strip(), "x-api-key") if key and key.strip() else None


def _text_key(key: str, header: str) -> str:
    """Keys are text: header bytes that are not UTF-8 arrive as surrogate escapes and can
    match no configured key."""
    try:
        key.encode()
    except UnicodeEncodeError:
        raise RelayError(400, f"The {header} header holds bytes that are not UTF-8 text.", param=header,
                         code="invalid_header") from None
    return key


def is_admin(request: web.Request, admin_key: str | None) -> bool:
    key = presented_key(request)
    return bool(admin_key and key and hmac.compare_digest(key.encode(), admin_key.encode()))
