"""The virtual key record, its secret, and the validation of what an operator sends (pure)."""
from __future__ import annotations

import base64
import fnmatch
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from relay_config.schema import Budget, ModelLimits, Strict

from ..auth import digest

SECRET_PREFIX = "sk-relay-"
SECRET_BYTES = 32  # 256 bits of entropy (the issue asks for at least 192)


def new_secret() -> str:
    return SECRET_PREFIX + base64.urlsafe_b64encode(os.urandom(SECRET_BYTES)).rstrip(b"=").decode()


# What new_secret makes; anything else is not one of ours and costs no store lookup.
SECRET_SHAPE = re.compile(re.escape(SECRET_PREFIX) + r"[A-Za-z0-9_-]{%d}" % len(new_secret().removeprefix(SECRET_PREFIX)))


def could_be_secret(value: str) -> bool:
    return SECRET_SHAPE.fullmatch(value) is not None


def new_key_id() -> str:
    return "key_" + os.urandom(9).hex()


def secret_digest(secret: str) -> str:
    """The digest a key is found by: the same one YAML keys are (relay.auth.digest)."""
    return digest(secret)


def display_hint(secret: str) -> str:
    """Enough to recognise a key in a list, never enough to use it: prefix + last 4."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


class KeyInputError(ValueError):
    """Bad operator input: becomes a 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class KeyNotFound(LookupError):
    def __init__(self, key_id: str):
        super().__init__(f"No virtual key with id '{key_id}'.")
        self.key_id = key_id


class KeyLimits(ModelLimits):
    """Per-key limits, in the same shape as a tenant's (enforced in addition to the tenant's)."""

    budget: Budget | None = None


class KeyCreate(Strict):
    tenant: str = Field(min_length=1)
    name: str = ""
    models: list[str] | None = None  # glob allowlist; can only narrow the tenant's
    limits: KeyLimits = KeyLimits()
    expires_at: float | None = Field(None, gt=0)  # unix seconds; null = never
    metadata: dict[str, Any] = {}


class KeyPatch(Strict):
    name: str | None = None
    models: list[str] | None = None
    limits: KeyLimits | None = None
    expires_at: float | None = Field(None, gt=0)
    disabled: bool | None = None
    metadata: dict[str, Any] | None = None


def parse(model: type[Strict], body: Any) -> Any:
    if not isinstance(body, dict):
        raise KeyInputError("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise KeyInputError(f"Invalid value for '{param}': {err['msg']}.", param) from None


@dataclass(slots=True)
class Previous:
    """A rotated-out secret that still works until `until` (the grace period)."""

    digest: str
    until: float


@dataclass(slots=True)
class VirtualKey:
    id: str
    tenant: str
    digest: str
    hint: str
    created_at: float
    name: str = ""
    expires_at: float | None = None
    last_used_at: float | None = None
    disabled: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    models: list[str] | None = None
    limits: dict[str, Any] = field(default_factory=dict)  # KeyLimits as plain JSON
    previous: list[Previous] = field(default_factory=list)

    def accepts(self, digest: str, now: float) -> bool:
        """Whether the secret with this digest authenticates as this key at `now`."""
        if self.disabled or (self.expires_at is not None and now >= self.expires_at):
            return False
        return digest == self.digest or any(p.digest == digest and now < p.until for p in self.previous)

    def may_use(self, model: str) -> bool:
        return self.models is None or any(fnmatch.fnmatchcase(model, p) for p in self.models)

    @property
    def key_limits(self) -> KeyLimits:
        return KeyLimits.model_validate(self.limits)

    def digests(self) -> list[str]:
        return [self.digest, *(p.digest for p in self.previous)]

    def doc(self) -> dict[str, Any]:
        """The stored form (everything but last_used_at, which is written on its own)."""
        out = asdict(self)
        del out["last_used_at"]
        return out

    @classmethod
    def from_doc(cls, doc: dict[str, Any], last_used_at: float | None = None) -> VirtualKey:
        d = dict(doc)
        d["previous"] = [Previous(**p) for p in d.get("previous", [])]
        return cls(**d, last_used_at=last_used_at)

    def public(self, now: float) -> dict[str, Any]:
        """What the admin API and the CLI show: never the secret nor its digest."""
        return {
            "id": self.id, "object": "relay.key", "tenant": self.tenant, "name": self.name, "hint": self.hint,
            "created_at": self.created_at, "expires_at": self.expires_at, "last_used_at": self.last_used_at,
            "disabled": self.disabled, "expired": self.expires_at is not None and now >= self.expires_at,
            "models": self.models, "limits": self.limits, "metadata": self.metadata,
            "previous_valid_until": max((p.until for p in self.previous if p.until > now), default=None),
        }


def limits_json(limits: KeyLimits) -> dict[str, Any]:
    return limits.model_dump(exclude_none=True)
