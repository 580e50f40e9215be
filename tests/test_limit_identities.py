"""Limits key on server-side identities, and every path is accounted: regression tests for
the bypasses a security review reproduced (issue: security and limit integrity)."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from relay.appkeys import STORE

from .support import ACME_KEY, anthropic_channel, base_config
from .support.messages import check_error

HELLO = [{"role": "user", "content": "hi"}]


def with_limits(config: str, limits: str) -> str:
    return config.replace('    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]',
                          '    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]\n    limits:\n' + limits, 1)


def ledger(relay):
    return relay.server.app[STORE].ledger


async def test_a_client_chosen_request_id_does_not_share_a_concurrency_slot(make_relay, fake_openai):
    config = with_limits(base_config(fake_openai.url), "      max_concurrent: 2\n").replace(
        "      gpt-4.1-mini: text\n", "      gpt-4.1-mini: text\n      gpt-paced: paced-100\n")
    relay = await make_relay(config)
    headers = {"Authorization": f"Bearer {ACME_KEY}", "x-request-id": "same-id-for-all"}
    async with aiohttp.ClientSession() as s:
        async def one() -> int:
            async with s.post(relay.url + "/v1/chat/completions", headers=headers,
                              json={"model": "gpt-paced", "messages": HELLO, "stream": True}) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(6)))
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]


async def test_a_per_model_limit_also_binds_the_models_aliases(make_relay, fake_openai):
    config = with_limits(base_config(fake_openai.url), "      models:\n        demo: {rpm: 2}\n")
    config = config.replace("channels:\n", "aliases: {fast: demo}\nchannels:\n", 1)
    relay = await make_relay(config)
    statuses = []
    for model in ("demo", "fast", "fast", "demo"):
        resp = await relay.post("/v1/chat/completions", {"model": model, "messages": HELLO})
        statuses.append(resp.status)
    assert statuses == [200, 200, 429, 429]
    assert {r.model for r in ledger(relay)} == {"demo"}  # the ledger keys on the canonical model too


async def test_native_responses_are_accounted_streamed_or_not(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    for stream in (True, False) * 5:
        resp = await relay.post("/v1/responses", {"model": "gpt-native", "input": "hi", "stream": stream})
        assert resp.status == 200
    async with aiohttp.ClientSession() as s:  # clients that hang up the moment the answer is complete
        for _ in range(6):
            resp = await s.post(relay.url + "/v1/responses", headers={"Authorization": f"Bearer {ACME_KEY}"},
                                json={"model": "gpt-native", "input": "hi", "stream": True})
            seen = b""
            while b"response.completed" not in seen:
                seen += await resp.content.readany()
            resp.close()
    for _ in range(100):
        if len(ledger(relay)) == 16:
            break
        await asyncio.sleep(0.02)
    rows = ledger(relay)
    assert len(rows) == 16
    assert all(r.output_tokens > 0 and not r.estimated and r.status == 200 for r in rows), rows


async def test_a_native_stream_cut_by_the_client_is_charged_for_what_was_relayed(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    fake_openai.frame_delay = 0.05
    async with aiohttp.ClientSession() as s:
        resp = await s.post(relay.url + "/v1/responses", headers={"Authorization": f"Bearer {ACME_KEY}"},
                            json={"model": "gpt-native", "input": "hi", "stream": True})
        seen = b""
        while b"output_text.delta" not in seen:
            seen += await resp.content.readany()
        resp.close()
    for _ in range(100):
        if ledger(relay):
            break
        await asyncio.sleep(0.02)
    (row,) = ledger(relay)
    assert row.status == 499 and row.channel == "openai-native"
    assert row.estimated and row.output_tokens > 0 and row.input_tokens > 0


async def test_a_native_upstream_error_is_in_the_ledger_and_fails_over_nowhere(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    resp = await relay.post("/v1/responses", {"model": "broken-native-429", "input": "hi"})
    assert resp.status == 429 and json.loads(await resp.read())["error"]["message"] == "upstream says 429"
    (row,) = ledger(relay)
    assert row.status == 429 and row.channel == "openai-native" and row.api == "responses"


async def test_token_counts_spend_the_tenants_request_rate(make_relay, fake_openai, fake_anthropic):
    """A count reaches the upstream (and spends its rate limit): it costs one request of the
    tenant's rpm, so a tenant cannot hammer a shared channel through the count endpoints."""
    config = with_limits(base_config(fake_openai.url, extra_channels=anthropic_channel(fake_anthropic.url)), "      rpm: 2\n")
    relay = await make_relay(config.replace('"broken-*", "slow-*"]', '"broken-*", "slow-*", "claude-*"]', 1))
    headers = {"x-api-key": ACME_KEY, "anthropic-version": "2023-06-01"}
    statuses = []
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(relay.url + "/v1/messages/count_tokens", headers=headers,
                              json={"model": "claude-text", "messages": HELLO}) as r:
                statuses.append(r.status)
                body = await r.json()
    assert statuses == [200, 200, 429]
    check_error(body)  # the Messages API's own error shape, per Anthropic's document
    assert body["error"]["type"] == "rate_limit_error"
    assert [r.path for r in fake_anthropic.requests].count("/v1/messages/count_tokens") == 2
    assert ledger(relay) == []  # a count is no model call: no ledger row, no tokens
