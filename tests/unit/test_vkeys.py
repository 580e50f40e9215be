"""The pure parts of virtual keys: secrets, validity at a given time, validation, the cache."""
from __future__ import annotations

import base64

import pytest

from relay.vkeys.cache import KeyCache
from relay.vkeys.memory import MemoryKeyStore
from relay.vkeys.model import (
    SECRET_PREFIX,
    KeyCreate,
    KeyInputError,
    Previous,
    VirtualKey,
    display_hint,
    new_secret,
    parse,
    secret_digest,
)


def make_key(**kw: object) -> VirtualKey:
    return VirtualKey(id="key_1", tenant="acme", digest=secret_digest("sk-relay-a"), hint="h", created_at=0.0, **kw)  # type: ignore[arg-type]


def test_secret_format_and_entropy() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for s in secrets:
        assert s.startswith(SECRET_PREFIX)
        raw = base64.urlsafe_b64decode(s.removeprefix(SECRET_PREFIX) + "=")
        assert len(raw) * 8 >= 192
        assert display_hint(s) == SECRET_PREFIX + "..." + s[-4:]


def test_accepts_expiry_disabled_and_grace() -> None:
    d, old = secret_digest("sk-relay-a"), secret_digest("sk-relay-old")
    key = make_key(expires_at=100.0, previous=[Previous(old, 50.0)])
    assert key.accepts(d, 99.9) and not key.accepts(d, 100.0)
    assert key.accepts(old, 49.9) and not key.accepts(old, 50.0)
    assert not key.accepts(secret_digest("sk-relay-other"), 1.0)
    key.disabled = True
    assert not key.accepts(d, 1.0)


def test_allowlist_globs() -> None:
    assert make_key().may_use("anything")
    key = make_key(models=["gpt-4.1-*"])
    assert key.may_use("gpt-4.1-mini") and not key.may_use("gpt-5")
    assert not make_key(models=[]).may_use("gpt-4.1-mini")


@pytest.mark.parametrize("body, param", [
    ({"tenant": ""}, "tenant"), ({"tenant": "a", "limits": {"budget": {"tokens": 0}}}, "limits.budget.tokens"),
    ({"tenant": "a", "limits": {"budget": {"tokens": 5, "period": "week"}}}, "limits.budget.period"),
    ([], None),
])
def test_validation_names_the_param(body: object, param: str | None) -> None:
    with pytest.raises(KeyInputError) as e:
        parse(KeyCreate, body)
    assert e.value.param == param


async def test_cache_holds_answers_at_most_ttl() -> None:
    now = [0.0]
    store = MemoryKeyStore()
    cache = KeyCache(store, lambda: now[0], ttl=1.0)
    key = make_key()
    await store.save(key)
    assert (await cache.lookup(key.digest)) is not None
    await store.delete(key.id)
    now[0] = 0.99
    assert (await cache.lookup(key.digest)) is not None  # cached
    now[0] = 1.0
    assert (await cache.lookup(key.digest)) is None  # a second old: asked again
    await store.save(key)
    now[0] = 1.5
    assert (await cache.lookup(key.digest)) is None  # a miss is cached as well
    now[0] = 2.0
    assert (await cache.lookup(key.digest)) is not None


async def test_cache_is_bounded() -> None:
    store = MemoryKeyStore()
    cache = KeyCache(store, lambda: 0.0, max_entries=3)
    for i in range(10):
        await cache.lookup(f"{i:064x}")
    assert len(cache._entries) == 3


def test_only_the_secret_shape_relay_issues_is_looked_up():
    from relay.vkeys.model import could_be_secret, new_secret

    assert could_be_secret(new_secret())
    for junk in ("sk-relay-", "sk-relay-x", "sk-relay-" + "a" * 500, new_secret() + "!", "sk-other-" + new_secret()[9:]):
        assert not could_be_secret(junk)
