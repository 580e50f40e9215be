"""Tenant isolation: each key sees and uses only its own models."""
from __future__ import annotations

import hashlib
import json

from .spec import validate, validate_error
from .support import ACME_KEY, GLOBEX_KEY, base_config


async def models_of(relay, key):
    async with relay.client(key) as client:
        page = await client.models.list()
    return [m.id for m in page.data]


async def test_models_lists_only_the_tenants_models(relay):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(relay.url + "/v1/models", headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
            validate("ListModelsResponse", await r.json())
        async with s.get(relay.url + "/v1/models/demo", headers={"Authorization": f"Bearer {ACME_KEY}"}) as r:
            validate("Model", await r.json())
    acme = await models_of(relay, ACME_KEY)
    globex = await models_of(relay, GLOBEX_KEY)
    assert "gpt-4.1-mini" in acme and "demo" in acme and "globex-chat" not in acme
    assert globex == ["globex-chat"]


async def test_model_retrieve_is_per_tenant(relay):
    from openai import NotFoundError

    async with relay.client(GLOBEX_KEY) as client:
        assert (await client.models.retrieve("globex-chat")).id == "globex-chat"
        try:
            await client.models.retrieve("gpt-4.1-mini")
            raise AssertionError("another tenant's model must not be found")
        except NotFoundError as e:
            validate_error(e.response.json())
            assert e.response.json()["error"]["code"] == "model_not_found"


async def test_models_needs_a_key(relay):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(relay.url + "/v1/models") as resp:
            assert resp.status == 401
            validate_error(await resp.json())


async def test_each_tenant_reaches_only_its_models(relay, fake_openai):
    ok = await relay.post("/v1/chat/completions", {"model": "globex-chat", "messages": [{"role": "user", "content": "x"}]}, key=GLOBEX_KEY)
    assert ok.status == 200
    denied = await relay.post("/v1/chat/completions", {"model": "globex-chat", "messages": [{"role": "user", "content": "x"}]}, key=ACME_KEY)
    assert denied.status == 404  # outside the allowlist looks like "does not exist"


async def test_key_sha256_authenticates(make_relay, fake_openai):
    secret = "sk-hashed-only-key"
    tenant = f"- name: hashed\n  key_sha256: [{hashlib.sha256(secret.encode()).hexdigest()}]\n  models: [demo]\n"
    relay = await make_relay(base_config(fake_openai.url, extra_tenants=tenant))
    resp = await relay.post("/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "x"}]}, key=secret)
    assert resp.status == 200
    assert await models_of(relay, secret) == ["demo"]


async def test_health_and_readiness(relay):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for path in ("/healthz", "/readyz"):
            async with s.get(relay.url + path) as resp:
                assert resp.status == 200, path
                assert json.loads(await resp.read())["status"] in ("ok", "ready")
