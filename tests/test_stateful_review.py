"""Regressions found reviewing the stateful Responses work: limits released on every path of a
background response, a store that does not answer is a 503 (never a 500), and a background
response that cannot be stored ends `failed` at once."""
from __future__ import annotations

import asyncio
import json

import pytest

from .spec import validate, validate_error
from .support import ACME_KEY, ADMIN, base_config


def limited(upstream: str, extra: str = "", store: str = "memory://") -> str:
    config = base_config(upstream).replace('    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]',
                                           '    models: ["gpt-*", "demo", "fast", "broken-*", "slow-*"]\n'
                                           '    limits:\n      max_concurrent: 1\n')
    return config.replace("url: memory://", f"url: {store}").replace("server:\n", f"server:\n  admin_key: {ADMIN}\n") + extra


async def test_a_background_request_refused_at_storing_releases_its_concurrency_slot(make_relay, fake_openai):
    # The history fits the cap, the queued response (which repeats the instructions) does not.
    relay = await make_relay(limited(fake_openai.url, "responses:\n  max_stored_bytes: 4096\n"))
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "x" * 2500, "instructions": "y" * 2500,
                                              "background": True})
    err = json.loads(await resp.read())
    assert resp.status == 413 and err["error"]["code"] == "stored_response_too_large"
    validate_error(err)
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "hi"})
    assert resp.status == 200, await resp.read()  # the refused call's slot was freed


async def test_a_background_response_too_big_to_store_when_done_is_failed_at_once(make_relay, fake_openai):
    # The queued record takes ~650 bytes, the completed one ~1250.
    relay = await make_relay(base_config(fake_openai.url) + "responses:\n  max_stored_bytes: 1024\n")
    _, queued = await relay.post_json("/v1/responses", {"model": "gpt-4.1-mini", "input": "x", "background": True})
    assert queued["status"] == "queued"
    for _ in range(300):
        _, got = await relay.get_json(f"/v1/responses/{queued['id']}")
        if got["status"] not in ("queued", "in_progress"):
            break
        await asyncio.sleep(0.01)
    assert got["status"] == "failed", got
    assert "max_stored_bytes" in got["error"]["message"]
    validate("Response", got)


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/responses/resp_abc123", None),
    ("GET", "/v1/responses/resp_abc123/input_items", None),
    ("DELETE", "/v1/responses/resp_abc123", None),
    ("POST", "/v1/responses/resp_abc123/cancel", None),
    ("POST", "/v1/responses", {"model": "gpt-4.1-mini", "input": "x", "previous_response_id": "resp_abc123"}),
    ("POST", "/v1/responses", {"model": "gpt-4.1-mini", "input": "x", "background": True}),
])
async def test_an_unreachable_store_is_a_503_on_every_stored_response_path(make_relay, fake_openai, method, path, body):
    import aiohttp

    from .proc import free_port

    relay = await make_relay(base_config(fake_openai.url).replace("url: memory://", f"url: redis://127.0.0.1:{free_port()}/0"))
    async with aiohttp.ClientSession() as s:
        async with s.request(method, relay.url + path, json=body, headers={"authorization": f"Bearer {ACME_KEY}"}) as r:
            err = json.loads(await r.read())
            assert r.status == 503, err
    assert err["error"]["code"] == "store_unavailable"
    validate_error(err)


async def test_a_cancel_noted_by_another_instance_ends_cancelled_not_failed(make_relay, fake_openai, monkeypatch):
    from relay.stateful import background

    from .support import store_of

    monkeypatch.setattr(background, "BEAT_EVERY", 0.01)
    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel))
    _, queued = await relay.post_json("/v1/responses", {"model": "gpt-watched", "input": "one", "background": True})
    # What POST /cancel on an instance that does not run it leaves for the one that does:
    await store_of(relay).doc_put("acme", "cancel:" + queued["id"], "1", 60)
    for _ in range(300):
        _, got = await relay.get_json(f"/v1/responses/{queued['id']}")
        if got["status"] not in ("queued", "in_progress"):
            break
        await asyncio.sleep(0.01)
    assert got["status"] == "cancelled", got
    validate("Response", got)


async def test_background_runs_started_at_once_still_respect_the_cap(make_relay, fake_openai, tmp_path):
    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    config = base_config(fake_openai.url, extra_channels=channel).replace("url: memory://", f"url: sqlite:///{tmp_path}/r.db")
    relay = await make_relay(config + "responses:\n  max_background: 2\n")
    body = {"model": "gpt-watched", "input": "x", "background": True}
    answers = await asyncio.gather(*(relay.post("/v1/responses", body) for _ in range(6)))
    assert sorted(r.status for r in answers) == [200, 200, 429, 429, 429, 429]


async def test_a_stored_compaction_turn_can_be_continued(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    history = [{"role": "user", "content": "Plan the trip."}, {"role": "assistant", "content": "Rome, then Naples."},
               {"type": "compaction_trigger"}]
    resp, compacted = await relay.post_json("/v1/responses", {"model": "gpt-4.1-mini", "input": history})
    assert resp.status == 200 and compacted["output"][0]["type"] == "compaction"
    resp, body = await relay.post_json("/v1/responses", {"model": "gpt-4.1-mini", "input": "And now?",
                                                         "previous_response_id": compacted["id"]})
    assert resp.status == 200, body
    assert fake_openai.last.body["messages"][-1] == {"role": "user", "content": "And now?"}
    _, listed = await relay.get_json(f"/v1/responses/{compacted['id']}/input_items")
    assert all(i["type"] != "compaction_trigger" for i in listed["data"])  # a request marker, not an item


async def test_a_background_response_deleted_while_it_runs_stays_deleted(make_relay, fake_openai):
    import aiohttp

    channel = f"- name: paced\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-paced: paced-50}}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel))
    headers = {"authorization": f"Bearer {ACME_KEY}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(relay.url + "/v1/responses", headers=headers,
                          json={"model": "gpt-paced", "input": "x", "background": True, "stream": True}) as r:
            first = json.loads((await r.content.readuntil(b"\n\n")).decode().split("data: ", 1)[1])
            rid = first["response"]["id"]
            async with s.delete(f"{relay.url}/v1/responses/{rid}", headers=headers) as d:
                assert d.status == 200
            await r.read()  # the run ends
    from relay.stateful.appkeys import RUNS

    for _ in range(300):
        if rid not in relay.server.app[RUNS].tasks:
            break
        await asyncio.sleep(0.01)
    resp, _ = await relay.get_json(f"/v1/responses/{rid}")
    assert resp.status == 404


async def test_an_odd_limit_is_a_400_naming_it(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url))
    _, done = await relay.post_json("/v1/responses", {"model": "gpt-4.1-mini", "input": "x"})
    for limit in ("%C2%B2", "%E2%91%A0", "-1", "1e3", "9" * 5000):  # '²' and '①' are digits to str.isdigit, not to int()
        resp, err = await relay.get_json(f"/v1/responses/{done['id']}/input_items?limit={limit}")
        assert resp.status == 400 and err["error"]["param"] == "limit", (limit, err)
        validate_error(err)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_native_channel_answer_repeats_the_stored_state_it_continued(make_relay, fake_openai, stream):
    from .support import respond

    relay = await make_relay(base_config(fake_openai.url))
    client = relay.client()
    first = await respond(client, stream, model="gpt-native", input="one")
    second = await respond(client, stream, model="gpt-native", input="two", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert (await client.responses.retrieve(second.id)).previous_response_id == first.id


async def test_a_background_run_cut_before_it_began_still_ends_its_call(make_relay, fake_openai):
    """A shutdown landing in the same loop turn as the spawn: the run's body never starts, yet
    its model call must end (ledger row written, concurrency slot freed)."""
    from relay.stateful.appkeys import RUNS

    from .support import base_config, store_of

    limited = "- name: solo\n  keys: [sk-solo-0123456789]\n  models: ['*']\n  limits: {max_concurrent: 1}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_tenants=limited))
    runs = relay.server.app[RUNS]
    client = relay.client("sk-solo-0123456789")

    class CancelledOnArrival(dict):  # the spawned task is cancelled before its first step
        def __setitem__(self, rid, task):
            super().__setitem__(rid, task)
            task.cancel()

    runs.tasks = CancelledOnArrival()
    await client.responses.create(model="gpt-4.1-mini", input="one", background=True)
    runs.tasks = {}
    for _ in range(100):
        if any(r.tenant == "solo" for r in store_of(relay).ledger):
            break
        await asyncio.sleep(0.01)
    assert [r.status for r in store_of(relay).ledger if r.tenant == "solo"] == [499]
    assert (await client.responses.create(model="gpt-4.1-mini", input="two")).status == "completed"  # the slot is free
