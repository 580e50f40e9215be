"""Key operations shared by the admin API and the CLI: each one validated, stored, and
written to the audit trail (a store row and a JSON log line naming who did it, never a secret)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from .model import (
    KeyCreate,
    KeyInputError,
    KeyNotFound,
    KeyPatch,
    Previous,
    VirtualKey,
    display_hint,
    limits_json,
    new_key_id,
    new_secret,
    parse,
    secret_digest,
)
from .store import KeyStore

audit_log = logging.getLogger("relay.audit")
MAX_GRACE = 30 * 86400.0


class KeyService:
    def __init__(self, store: KeyStore, tenants: Collection[str], actor: str, clock: Callable[[], float],
                 on_change: Callable[[VirtualKey], None] = lambda key: None):
        self.store, self.tenants, self.actor, self.clock, self.on_change = store, tenants, actor, clock, on_change

    async def _audit(self, action: str, key: VirtualKey, detail: dict[str, Any] | None = None) -> None:
        entry = {"time": self.clock(), "actor": self.actor, "action": action, "key_id": key.id, "tenant": key.tenant,
                 "detail": detail or {}}
        await self.store.audit(entry)
        audit_log.info("key %s", action, extra={"fields": {"audit": True, **entry}})

    def _check_models(self, models: list[str] | None) -> None:
        if models is not None and any(not isinstance(m, str) or not m for m in models):
            raise KeyInputError("Each entry of 'models' must be a non-empty model name or glob.", "models")

    async def create(self, body: Any) -> tuple[VirtualKey, str]:
        req: KeyCreate = parse(KeyCreate, body)
        if req.tenant not in self.tenants:
            raise KeyInputError(f"No tenant named '{req.tenant}' in the config; a key belongs to a configured tenant.", "tenant")
        self._check_models(req.models)
        if req.expires_at is not None and req.expires_at <= self.clock():
            raise KeyInputError("'expires_at' is in the past.", "expires_at")
        secret = new_secret()
        key = VirtualKey(id=new_key_id(), tenant=req.tenant, digest=secret_digest(secret), hint=display_hint(secret),
                         created_at=self.clock(), name=req.name, expires_at=req.expires_at, metadata=req.metadata,
                         models=req.models, limits=limits_json(req.limits))
        await self.store.save(key)
        await self._audit("create", key, {"name": key.name, "models": key.models, "limits": key.limits,
                                          "expires_at": key.expires_at})
        return key, secret

    async def get(self, key_id: str) -> VirtualKey:
        key = await self.store.get(key_id)
        if key is None:
            raise KeyNotFound(key_id)
        return key

    async def update(self, key_id: str, body: Any) -> VirtualKey:
        patch: KeyPatch = parse(KeyPatch, body)
        key = await self.get(key_id)
        changed = {f: getattr(patch, f) for f in patch.model_fields_set}
        for f in ("name", "disabled", "metadata", "limits"):  # null makes no sense for these
            if f in changed and changed[f] is None:
                raise KeyInputError(f"'{f}' cannot be null.", f)
        self._check_models(patch.models)
        if "name" in changed:
            key.name = changed["name"]
        if "models" in changed:
            key.models = changed["models"]
        if "limits" in changed:
            key.limits = limits_json(changed["limits"])
        if "expires_at" in changed:
            key.expires_at = changed["expires_at"]
        if "disabled" in changed:
            key.disabled = changed["disabled"]
        if "metadata" in changed:
            key.metadata = changed["metadata"]
        await self.store.save(key)
        self.on_change(key)
        await self._audit("update", key, {"fields": sorted(changed), **{f: key.public(self.clock())[f] for f in sorted(changed)}})
        return key

    async def rotate(self, key_id: str, grace: Any = 0) -> tuple[VirtualKey, str]:
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= MAX_GRACE:
            raise KeyInputError(f"'grace_seconds' must be a number of seconds from 0 to {int(MAX_GRACE)}.", "grace_seconds")
        key = await self.get(key_id)
        now = self.clock()
        self.on_change(key)  # the old digests leave this instance's cache
        kept = [p for p in key.previous if p.until > now]
        if grace > 0:
            kept.append(Previous(key.digest, now + grace))
        secret = new_secret()
        key.previous, key.digest, key.hint = kept, secret_digest(secret), display_hint(secret)
        await self.store.save(key)
        await self._audit("rotate", key, {"grace_seconds": grace})
        return key, secret

    async def revoke(self, key_id: str) -> VirtualKey:
        key = await self.store.delete(key_id)
        if key is None:
            raise KeyNotFound(key_id)
        self.on_change(key)
        await self._audit("revoke", key)
        return key
