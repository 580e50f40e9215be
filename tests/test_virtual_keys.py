"""Virtual keys (issue 20): issued, limited, rotated and revoked at runtime through the admin
API on the ops listener; used with the official openai SDK; expiry and rotation grace driven
by an injected clock."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest

from relay.app import create_app
from relay.appkeys import STORE
from relay.ops import ops_app
from relay.vkeys.appkeys import KEY_CLOCK, KEYSTORE
from relay_config.loader import parse_config

from .spec import validate_error
from .support import ACME_KEY, ADMIN, ENV, Clock, Relay, base_config
from .support.messages import check_error

LIMITED_TENANT = """\
- name: lim
  keys: ["sk-lim-yaml-key-000"]
  limits: {rpm: 2}
"""


def keyed_config(upstream: str, store: str = "memory://") -> str:
    text = base_config(upstream, extra_tenants=LIMITED_TENANT).replace("server:\n", f"server:\n  admin_key: {ADMIN}\n", 1)
    return text.replace("store:\n  url: memory://\n", f"store:\n  url: {store}\n")


async def start_relay(aiohttp_server: Callable[..., Any], config_text: str, clock: Clock) -> Relay:
    app = create_app(parse_config(config_text, "test.yaml", env=ENV))
    app[KEY_CLOCK] = clock
    server = await aiohttp_server(app, host="127.0.0.1")
    ops = await aiohttp_server(ops_app(server.app), host="127.0.0.1")
    return Relay(server, config_text, ops)


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
async def relay(aiohttp_server: Callable[..., Any], fake_openai: Any, clock: Clock) -> Relay:
    return await start_relay(aiohttp_server, keyed_config(fake_openai.url), clock)


async def admin(relay: Relay, method: str, path: str, body: Any = None, key: str | None = ADMIN,
                base: str | None = None) -> tuple[int, Any, str]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, (base or relay.ops_url) + path, json=body, headers=headers) as r:
            text = await r.text()
            out = json.loads(text) if text else None
            if r.status >= 400:
                validate_error(out)  # every admin API error is an OpenAI error object
            return r.status, out, text


async def create(relay: Relay, **body: Any) -> tuple[str, str]:
    status, out, _ = await admin(relay, "POST", "/admin/keys", {"tenant": "acme", **body})
    assert status == 201, out
    return out["id"], out["secret"]


async def chat(relay: Relay, key: str, model: str = "gpt-4.1-mini") -> Any:
    return await relay.client(key).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


async def test_create_use_list_patch_rotate_revoke(relay: Relay, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    key_id, secret = await create(relay, name="alice", metadata={"team": "search"})
    assert secret.startswith("sk-relay-") and len(secret) >= len("sk-relay-") + 43  # 32 random bytes
    reply = await chat(relay, secret)
    assert reply.choices[0].message.content
    async with relay.client(secret).chat.completions.stream(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == reply.choices[0].message.content

    # Listed and shown, never with the secret or its digest.
    status, listing, text = await admin(relay, "GET", "/admin/keys?tenant=acme")
    assert status == 200 and [k["id"] for k in listing["data"]] == [key_id]
    item = listing["data"][0]
    assert item["name"] == "alice" and item["hint"] == "sk-relay-..." + secret[-4:] and item["metadata"] == {"team": "search"}
    assert item["last_used_at"] is not None
    import hashlib
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() not in text
    assert "secret" not in item
    assert (await admin(relay, "GET", "/admin/keys?tenant=globex"))[1]["data"] == []

    # A limit set by PATCH takes effect on the next request.
    status, patched, _ = await admin(relay, "PATCH", f"/admin/keys/{key_id}", {"limits": {"rpm": 1}})
    assert status == 200 and patched["limits"] == {"rpm": 1}
    await chat(relay, secret)
    with pytest.raises(openai.RateLimitError) as refused:
        await chat(relay, secret)
    assert "this API key" in refused.value.message
    await chat(relay, ACME_KEY)  # the tenant's own YAML key is not limited by the key's counter
    assert (await admin(relay, "PATCH", f"/admin/keys/{key_id}", {"limits": {}}))[0] == 200

    # Rotation with a grace period: both secrets work until it ends, then only the new one.
    status, rotated, _ = await admin(relay, "POST", f"/admin/keys/{key_id}/rotate", {"grace_seconds": 60})
    assert status == 200 and rotated["id"] == key_id
    new_secret = rotated["secret"]
    assert new_secret != secret
    await chat(relay, new_secret)
    await chat(relay, secret)
    clock.advance(61)
    with pytest.raises(openai.AuthenticationError):
        await chat(relay, secret)
    await chat(relay, new_secret)

    # Without a grace period the old secret stops at once.
    newest = (await admin(relay, "POST", f"/admin/keys/{key_id}/rotate"))[1]["secret"]
    with pytest.raises(openai.AuthenticationError):
        await chat(relay, new_secret)
    await chat(relay, newest)

    status, gone, _ = await admin(relay, "DELETE", f"/admin/keys/{key_id}")
    assert status == 200 and gone == {"id": key_id, "object": "relay.key", "deleted": True}
    with pytest.raises(openai.AuthenticationError):
        await chat(relay, newest)
    assert (await admin(relay, "GET", f"/admin/keys/{key_id}"))[0] == 404

    # The audit trail: a row per operation, by the admin credential's id, and a JSON log line.
    status, audit, _ = await admin(relay, "GET", f"/admin/keys/{key_id}/audit")  # kept after the revocation
    assert status == 200
    trail = audit["data"]
    assert trail == await relay.server.app[KEYSTORE].audit_trail(key_id)
    assert (await admin(relay, "GET", "/admin/keys/key_nope/audit"))[0] == 404
    assert [e["action"] for e in trail] == ["create", "update", "update", "rotate", "rotate", "revoke"]
    assert {e["actor"] for e in trail} == {"admin"}
    audit_lines = [r for r in caplog.records if r.name == "relay.audit"]
    assert len(audit_lines) == 6 and all(r.fields["actor"] == "admin" and r.fields["key_id"] == key_id for r in audit_lines)
    # No secret in any log record, audit or access line.
    logged = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records)
    for s in (secret, new_secret, newest, ADMIN):
        assert s not in logged


async def test_expiry_and_disabled(relay: Relay, clock: Clock) -> None:
    key_id, secret = await create(relay, expires_at=clock.now + 10)
    await chat(relay, secret)
    clock.advance(11)
    with pytest.raises(openai.AuthenticationError) as refused:
        await chat(relay, secret)
    assert "sk-relay" not in refused.value.message
    assert (await admin(relay, "GET", f"/admin/keys/{key_id}"))[1]["expired"] is True

    other_id, other = await create(relay)
    assert (await admin(relay, "PATCH", f"/admin/keys/{other_id}", {"disabled": True}))[1]["disabled"] is True
    with pytest.raises(openai.AuthenticationError):
        await chat(relay, other)
    await admin(relay, "PATCH", f"/admin/keys/{other_id}", {"disabled": False})
    await chat(relay, other)


async def test_allowlist_only_narrows(relay: Relay) -> None:
    _, secret = await create(relay, models=["gpt-4.1-mini", "globex-*"])
    await chat(relay, secret)
    with pytest.raises(openai.NotFoundError) as hidden:  # in the tenant's list, not the key's: as unknown
        await chat(relay, secret, "gpt-tools")
    assert hidden.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # outside the tenant's list: the key cannot widen it
        await chat(relay, secret, "globex-chat")
    await chat(relay, ACME_KEY, "gpt-tools")  # the tenant itself still may
    listed = [m.id async for m in relay.client(secret).models.list()]
    assert listed == ["gpt-4.1-mini"]
    with pytest.raises(openai.NotFoundError):
        await relay.client(secret).models.retrieve("gpt-tools")
    assert "gpt-tools" in [m.id async for m in relay.client(ACME_KEY).models.list()]
    counting = {"model": "gpt-tools", "messages": [{"role": "user", "content": "hi"}]}
    resp, body = await relay.post_json("/v1/messages/count_tokens", counting, key=secret)
    assert resp.status == 404 and body["error"]["type"] == "not_found_error"  # counting asks the model too
    check_error(body)
    resp, _ = await relay.post_json("/v1/messages/count_tokens", {**counting, "model": "gpt-4.1-mini"}, key=secret)
    assert resp.status == 200


async def test_key_and_tenant_limits_both_hold(relay: Relay) -> None:
    status, a, _ = await admin(relay, "POST", "/admin/keys", {"tenant": "lim", "limits": {"rpm": 1}})
    b = (await admin(relay, "POST", "/admin/keys", {"tenant": "lim"}))[1]
    await chat(relay, a["secret"], "demo")
    with pytest.raises(openai.RateLimitError) as by_key:  # the key's rpm 1
        await chat(relay, a["secret"], "demo")
    assert "this API key" in by_key.value.message
    await chat(relay, b["secret"], "demo")  # the tenant's second request of its rpm 2
    with pytest.raises(openai.RateLimitError) as by_tenant:
        await chat(relay, b["secret"], "demo")
    assert "this API key" not in by_tenant.value.message
    with pytest.raises(openai.RateLimitError):
        await chat(relay, "sk-lim-yaml-key-000", "demo")


async def test_key_budget(relay: Relay) -> None:
    _, secret = await create(relay, limits={"budget": {"tokens": 1, "period": "day"}})
    await chat(relay, secret)
    with pytest.raises(openai.RateLimitError) as spent:
        await chat(relay, secret)
    assert spent.value.code == "insufficient_quota" and "API key" in spent.value.message
    await chat(relay, ACME_KEY)


async def test_usage_by_key(relay: Relay) -> None:
    key_id, secret = await create(relay)
    await chat(relay, secret)
    await chat(relay, secret)
    await chat(relay, ACME_KEY)
    status, out, _ = await admin(relay, "GET", f"/admin/usage?key={key_id}")
    assert status == 200
    assert [(r["tenant"], r["key_id"], r["model"], r["requests"]) for r in out["data"]] == [("acme", key_id, "gpt-4.1-mini", 2)]
    _, every_key, _ = await admin(relay, "GET", "/admin/usage?by=key")
    assert every_key == out
    rows = relay.server.app[STORE].ledger  # the usage store's ledger rows name the key too
    assert [r.key_id for r in rows] == [key_id, key_id, None]


@pytest.mark.parametrize("body, param", [
    ({"tenant": "nobody"}, "tenant"),
    ({"tenant": "acme", "limits": {"rpm": 0}}, "limits.rpm"),
    ({"tenant": "acme", "colour": "red"}, "colour"),
    ({"tenant": "acme", "models": "gpt-*"}, "models"),
    ({"tenant": "acme", "expires_at": 1.0}, "expires_at"),
    ({}, "tenant"),
])
async def test_create_validation(relay: Relay, body: dict[str, Any], param: str) -> None:
    status, out, _ = await admin(relay, "POST", "/admin/keys", body)
    assert status == 400 and out["error"]["param"] == param, out


async def test_unknown_ids_and_bad_patches(relay: Relay) -> None:
    for method, path in [("GET", "/admin/keys/key_nope"), ("PATCH", "/admin/keys/key_nope"),
                         ("DELETE", "/admin/keys/key_nope"), ("POST", "/admin/keys/key_nope/rotate")]:
        status, out, _ = await admin(relay, method, path, {} if method == "PATCH" else None)
        assert status == 404 and out["error"]["code"] == "key_not_found", (method, out)
    key_id, _ = await create(relay)
    assert (await admin(relay, "PATCH", f"/admin/keys/{key_id}", {"limits": {"tpm": -1}}))[1]["error"]["param"] == "limits.tpm"
    assert (await admin(relay, "PATCH", f"/admin/keys/{key_id}", {"disabled": None}))[1]["error"]["param"] == "disabled"
    assert (await admin(relay, "PATCH", f"/admin/keys/{key_id}", {"tenant": "globex"}))[1]["error"]["param"] == "tenant"
    out = (await admin(relay, "POST", f"/admin/keys/{key_id}/rotate", {"grace_seconds": -1}))[1]
    assert out["error"]["param"] == "grace_seconds"


async def test_no_tenant_key_reaches_admin(relay: Relay) -> None:
    _, secret = await create(relay)
    for key in (secret, ACME_KEY, None):
        status, out, text = await admin(relay, "GET", "/admin/keys", key=key)
        assert status == 401 and "sk-relay" not in text
    # The public listener has no admin API at all.
    status, _, _ = await admin(relay, "GET", "/admin/keys", base=relay.url)
    assert status == 404
    status, _, _ = await admin(relay, "POST", "/admin/keys", {"tenant": "acme"}, key=secret, base=relay.url)
    assert status == 404


async def test_unknown_virtual_key_and_metrics_stay_tenant_level(relay: Relay) -> None:
    key_id, secret = await create(relay)
    await chat(relay, secret)
    with pytest.raises(openai.AuthenticationError) as refused:
        await chat(relay, secret[:-4] + "AAAA")
    assert "AAAA" not in refused.value.message
    async with aiohttp.ClientSession() as s:
        async with s.get(relay.ops_url + "/metrics") as r:
            text = await r.text()
    assert 'tenant="acme"' in text and key_id not in text and secret not in text


async def test_key_concurrency(relay: Relay) -> None:
    _, secret = await create(relay, limits={"max_concurrent": 1})
    stream = await relay.client(secret).chat.completions.create(
        model="gpt-hang-midstream", messages=[{"role": "user", "content": "hi"}], stream=True)
    try:
        await stream.__anext__()  # in flight: the upstream went silent after two frames
        with pytest.raises(openai.RateLimitError) as busy:
            await chat(relay, secret)
        assert "concurrent requests" in busy.value.message and "this API key" in busy.value.message
        await chat(relay, ACME_KEY)  # the tenant has no concurrency limit of its own
    finally:
        await stream.close()


async def test_messages_api_with_a_virtual_key(relay: Relay) -> None:
    import anthropic

    _, secret = await create(relay, models=["demo"])
    client = anthropic.AsyncAnthropic(base_url=relay.url, api_key=secret, max_retries=0)
    msg = await client.messages.create(model="demo", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text"
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="gpt-4.1-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert [m.id async for m in client.models.list()] == ["demo"]
