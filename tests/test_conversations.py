"""The Conversations API with the official `openai` SDK against a real Relay (memory and
SQLite stores, one test on a real redis-server): every body and error validated against
OpenAI's document; tenant isolation on every endpoint; pagination in both orders; hostile
ids and oversized bodies; restarts; the interface POST /v1/responses uses."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.conversations import CONVERSATIONS
from relay_adaptors.kernel.errors import RelayError

from .redis_server import RedisServer
from .spec import validate, validate_error
from .support import ACME_KEY, GLOBEX_KEY, Relay, store_of

CONFIG = f"""\
server:
  max_body_bytes: 65536
responses:
  retention: 3600
  max_stored_bytes: %(max_bytes)d
store:
  url: %(store)s
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
  - name: globex
    keys: ["{GLOBEX_KEY}"]
channels:
  - name: demo
    type: mock
    models: [demo]
"""


def config(store: str, max_bytes: int = 1 << 20) -> str:
    return CONFIG % {"store": store, "max_bytes": max_bytes}


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
async def relay(make_relay: Callable[..., Any], store_url: str) -> Relay:
    return await make_relay(config(store_url))


async def call(relay: Relay, method: str, path: str, body: Any = None, key: str = ACME_KEY) -> tuple[int, Any]:
    """A raw call (for what the SDK would refuse to send): status and parsed body."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    async with aiohttp.ClientSession() as s, s.request(method, relay.url + path, data=data, headers=headers) as r:
        return r.status, json.loads(await r.read())


def rejected(status: int, body: Any, expected_status: int, param: str | None) -> dict[str, Any]:
    assert status == expected_status, body
    validate_error(body)
    assert body["error"]["param"] == param, body
    return body["error"]


def raw_json(raw: Any) -> Any:
    return json.loads(raw.text)


async def sdk_error(awaitable: Any, status: int, param: str | None) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as info:
        await awaitable
    body = info.value.response.json()
    return rejected(info.value.status_code, body, status, param)


TURN = [
    {"type": "message", "role": "user", "content": "What is the weather in Paris?"},
    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Use the tool."}], "encrypted_content": "opaque=="},
    {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 18C.", "annotations": []}]},
    {"role": "user", "content": [{"type": "input_text", "text": "And this?"},
                                 {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
]


async def test_lifecycle_with_the_sdk(relay: Relay) -> None:
    client = relay.client()
    raw = await client.conversations.with_raw_response.create(metadata={"topic": "demo"}, items=TURN[:1])
    validate("ConversationResource", raw_json(raw))
    conv = raw.parse()
    assert conv.id.startswith("conv_") and conv.object == "conversation" and conv.metadata == {"topic": "demo"}
    assert abs(conv.created_at - time.time()) < 60

    got = await client.conversations.with_raw_response.retrieve(conv.id)
    validate("ConversationResource", raw_json(got))
    assert raw_json(got) == raw_json(raw)

    updated = await client.conversations.with_raw_response.update(conv.id, metadata={"topic": "weather", "k": "v"})
    validate("ConversationResource", raw_json(updated))
    assert updated.parse().metadata == {"topic": "weather", "k": "v"}

    added = await client.conversations.items.with_raw_response.create(conv.id, items=TURN[1:])  # type: ignore[arg-type]
    body = raw_json(added)
    validate("ConversationItemList", body)
    assert [i["type"] for i in body["data"]] == ["reasoning", "function_call", "function_call_output", "message", "message"]
    prefixes = [i["id"].split("_")[0] for i in body["data"]]
    assert prefixes == ["rs", "fc", "fco", "msg", "msg"]
    assert all(i["status"] == "completed" for i in body["data"])
    assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"] and not body["has_more"]

    listed = await client.conversations.items.with_raw_response.list(conv.id, order="asc")
    whole = raw_json(listed)
    validate("ConversationItemList", whole)
    assert [i["type"] for i in whole["data"]] == ["message", *[i["type"] for i in body["data"]]]
    first = whole["data"][0]
    assert first["role"] == "user" and first["content"] == [{"type": "input_text", "text": "What is the weather in Paris?"}]
    assert whole["data"][4]["content"][0] == {"type": "output_text", "text": "It is 18C.", "annotations": [], "logprobs": []}

    desc = await client.conversations.items.list(conv.id)  # OpenAI's default order is desc
    assert [i.id for i in desc.data] == [i["id"] for i in reversed(whole["data"])]

    call_id = body["data"][1]["id"]
    one = await client.conversations.items.with_raw_response.retrieve(call_id, conversation_id=conv.id)
    validate("ConversationItem", raw_json(one))
    assert raw_json(one)["call_id"] == "call_1" and raw_json(one)["name"] == "weather"

    after_delete = await client.conversations.items.with_raw_response.delete(call_id, conversation_id=conv.id)
    validate("ConversationResource", raw_json(after_delete))
    assert raw_json(after_delete)["id"] == conv.id
    remaining = await client.conversations.items.list(conv.id, order="asc")
    assert call_id not in [i.id for i in remaining.data] and len(remaining.data) == 5
    await sdk_error(client.conversations.items.retrieve(call_id, conversation_id=conv.id), 404, "item_id")
    await sdk_error(client.conversations.items.delete(call_id, conversation_id=conv.id), 404, "item_id")

    deleted = await client.conversations.with_raw_response.delete(conv.id)
    validate("DeletedConversationResource", raw_json(deleted))
    assert raw_json(deleted) == {"id": conv.id, "object": "conversation.deleted", "deleted": True}
    for gone in (client.conversations.retrieve(conv.id), client.conversations.delete(conv.id),
                 client.conversations.items.list(conv.id), client.conversations.update(conv.id, metadata={})):
        err = await sdk_error(gone, 404, "conversation_id")
        assert conv.id in err["message"]


async def test_an_empty_create_and_an_empty_list(relay: Relay) -> None:
    client = relay.client()
    conv = await client.conversations.create()
    assert conv.metadata == {}
    status, body = await call(relay, "POST", "/v1/conversations")  # no body at all
    assert status == 200 and body["metadata"] == {}
    raw = await client.conversations.items.with_raw_response.list(conv.id)
    validate("ConversationItemList", raw_json(raw))
    assert raw_json(raw)["data"] == [] and raw_json(raw)["has_more"] is False


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pagination_in_both_orders(relay: Relay, order: str) -> None:
    client = relay.client()
    conv = await client.conversations.create(items=[{"role": "user", "content": f"m{i}"} for i in range(20)])
    await client.conversations.items.create(conv.id, items=[{"role": "user", "content": f"m{i}"} for i in range(20, 23)])
    texts = [f"m{i}" for i in range(23)]
    expected = texts if order == "asc" else texts[::-1]

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "7", "order": order, **({"after": after} if after else {})}
        status, body = await call(relay, "GET", f"/v1/conversations/{conv.id}/items?" + "&".join(f"{k}={v}" for k, v in params.items()))
        assert status == 200
        validate("ConversationItemList", body)
        pages += 1
        seen.extend(i["content"][0]["text"] for i in body["data"])
        assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
        assert body["has_more"] == (len(seen) < 23)
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert seen == expected and pages == 4

    # The SDK's own paginator walks the same pages.
    walked = [item.content[0].text async for item in client.conversations.items.list(conv.id, limit=5, order=order)]  # type: ignore[union-attr]
    assert walked == expected


async def test_include_controls_encrypted_reasoning_logprobs_and_images(relay: Relay) -> None:
    client = relay.client()
    logprob = {"token": "It", "logprob": -0.1, "bytes": [73, 116], "top_logprobs": []}
    conv = await client.conversations.create(items=[
        TURN[1], TURN[5],
        {"role": "assistant", "content": [{"type": "output_text", "text": "It", "annotations": [], "logprobs": [logprob]}]},
    ])  # type: ignore[list-item]
    plain = await call(relay, "GET", f"/v1/conversations/{conv.id}/items?order=asc")
    validate("ConversationItemList", plain[1])
    reasoning, image, answer = plain[1]["data"]
    assert "encrypted_content" not in reasoning
    assert image["content"][1] == {"type": "input_image", "image_url": None, "detail": "auto"}
    assert answer["content"][0]["logprobs"] == []

    raw = await client.conversations.items.with_raw_response.list(
        conv.id, order="asc", include=["reasoning.encrypted_content", "message.input_image.image_url", "message.output_text.logprobs"])
    full = raw_json(raw)
    validate("ConversationItemList", full)
    reasoning, image, answer = full["data"]
    assert reasoning["encrypted_content"] == "opaque=="
    assert image["content"][1]["image_url"] == "data:image/png;base64,AAAA"
    assert answer["content"][0]["logprobs"] == [logprob]
    one = await client.conversations.items.with_raw_response.retrieve(reasoning["id"], conversation_id=conv.id,
                                                                      include=["reasoning.encrypted_content"])
    assert raw_json(one)["encrypted_content"] == "opaque=="
    status, body = await call(relay, "GET", f"/v1/conversations/{conv.id}/items?include=everything")
    rejected(status, body, 400, "include")


async def test_another_tenants_conversation_is_a_404_on_every_endpoint(relay: Relay) -> None:
    acme, globex = relay.client(), relay.client(GLOBEX_KEY)
    conv = await acme.conversations.create(metadata={"owner": "acme"}, items=TURN[:1])
    item_id = (await acme.conversations.items.list(conv.id)).data[0].id
    attempts = [
        globex.conversations.retrieve(conv.id),
        globex.conversations.update(conv.id, metadata={"owner": "globex"}),
        globex.conversations.delete(conv.id),
        globex.conversations.items.list(conv.id),
        globex.conversations.items.create(conv.id, items=[{"role": "user", "content": "injected"}]),
        globex.conversations.items.retrieve(item_id, conversation_id=conv.id),
        globex.conversations.items.delete(item_id, conversation_id=conv.id),
    ]
    for attempt in attempts:
        await sdk_error(attempt, 404, "conversation_id")
    # globex's own conversation does not reach acme's items either.
    own = await globex.conversations.create()
    await sdk_error(globex.conversations.items.retrieve(item_id, conversation_id=own.id), 404, "item_id")
    await sdk_error(globex.conversations.items.delete(item_id, conversation_id=own.id), 404, "item_id")
    # acme's conversation is untouched.
    assert (await acme.conversations.retrieve(conv.id)).metadata == {"owner": "acme"}
    assert [i.id for i in (await acme.conversations.items.list(conv.id)).data] == [item_id]
    status, body = await call(relay, "GET", f"/v1/conversations/{conv.id}", key="sk-nobody-0000000000")
    rejected(status, body, 401, None)


HOSTILE_PATHS = [
    ("GET", "/v1/conversations/resp_123", "conversation_id"),
    ("GET", "/v1/conversations/conv_" + "a" * 200, "conversation_id"),
    ("GET", "/v1/conversations/conv_%00x", "conversation_id"),
    ("GET", "/v1/conversations/conv_%27%20OR%201=1", "conversation_id"),
    ("DELETE", "/v1/conversations/conv_..", "conversation_id"),
    ("GET", "/v1/conversations/conv_nothere", "conversation_id"),
]


@pytest.mark.parametrize(("method", "path", "param"), HOSTILE_PATHS)
async def test_hostile_conversation_ids(relay: Relay, method: str, path: str, param: str) -> None:
    status, body = await call(relay, method, path)
    rejected(status, body, 404 if path.endswith("nothere") else 400, param)
    assert "\x00" not in body["error"]["message"] and "OR 1=1" not in body["error"]["message"]


HOSTILE_BODIES: list[tuple[str, Any, str | None]] = [
    ("create", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ("create", {"metadata": {"k" * 65: "v"}}, "metadata"),
    ("create", {"metadata": {"k": "v" * 513}}, "metadata.k"),
    ("create", {"metadata": {"k": 1}}, "metadata.k"),
    ("create", {"metadata": ["k"]}, "metadata"),
    ("create", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
    ("create", {"items": "hello"}, "items"),
    ("create", {"items": [{"type": "web_search_call", "id": "ws_1"}]}, "items[0].type"),
    ("create", {"items": [{"type": "item_reference", "id": "msg_1"}]}, "items[0].type"),
    ("create", {"items": [{"role": "root", "content": "x"}]}, "items[0].role"),
    ("create", {"items": [{"role": "user", "content": 5}]}, "items[0].content"),
    ("create", {"items": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "items[0].content[0].type"),
    ("create", {"items": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "items[0].content[0].file_id"),
    ("create", {"items": [{"role": "user", "content": "x", "id": "msg_<script>"}]}, "items[0].id"),
    ("create", {"items": [{"role": "user", "content": "x", "id": "m" * 129}]}, "items[0].id"),
    ("create", {"items": [{"role": "user", "content": "x", "id": "msg_a"}, {"role": "user", "content": "y", "id": "msg_a"}]}, "items[1].id"),
    ("create", {"items": [{"role": "user", "content": "x", "status": "done"}]}, "items[0].status"),
    ("create", {"items": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "items[0].arguments"),
    ("create", {"items": [{"type": "function_call_output", "call_id": "c" * 65, "output": "x"}]}, "items[0].call_id"),
    ("create", {"items": [{"type": "reasoning", "summary": [{"type": "text", "text": "x"}]}]}, "items[0].summary[0].type"),
    ("create", {"model": "demo"}, "model"),
    ("create", [1, 2], None),
    ("create", "{not json", None),
    ("update", {}, "metadata"),
    ("update", {"metadata": {"k": {"nested": 1}}}, "metadata.k"),
    ("add", {}, "items"),
    ("add", {"items": []}, "items"),
    ("add", {"items": [None]}, "items[0]"),
]


@pytest.mark.parametrize(("endpoint", "body", "param"), HOSTILE_BODIES)
async def test_hostile_bodies_are_400s_naming_the_param(relay: Relay, endpoint: str, body: Any, param: str | None) -> None:
    conv = await relay.client().conversations.create(items=[{"role": "user", "content": "keep me"}])
    method, path = {"create": ("POST", "/v1/conversations"), "update": ("POST", f"/v1/conversations/{conv.id}"),
                    "add": ("POST", f"/v1/conversations/{conv.id}/items")}[endpoint]
    status, answer = await call(relay, method, path, body)
    rejected(status, answer, 400, param)
    items = await relay.client().conversations.items.list(conv.id)
    assert [i.content[0].text for i in items.data] == ["keep me"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("query", "param"), [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("order=sideways", "order"),
    ("after=msg_unknown", "after"), ("after=%3Cscript%3E", "after"), ("include=reasoning", "include"),
])
async def test_bad_list_parameters(relay: Relay, query: str, param: str) -> None:
    conv = await relay.client().conversations.create(items=[{"role": "user", "content": "x"}])
    status, body = await call(relay, "GET", f"/v1/conversations/{conv.id}/items?{query}")
    rejected(status, body, 400, param)


async def test_hostile_item_ids_in_paths(relay: Relay) -> None:
    conv = await relay.client().conversations.create(items=[{"role": "user", "content": "x"}])
    for method in ("GET", "DELETE"):
        status, body = await call(relay, method, f"/v1/conversations/{conv.id}/items/" + "x" * 300)
        rejected(status, body, 400, "item_id")
        status, body = await call(relay, method, f"/v1/conversations/{conv.id}/items/msg_%22%3B")
        rejected(status, body, 400, "item_id")
        status, body = await call(relay, method, f"/v1/conversations/{conv.id}/items/msg_unknown")
        rejected(status, body, 404, "item_id")


async def test_client_ids_are_kept_and_duplicates_refused(relay: Relay) -> None:
    client = relay.client()
    conv = await client.conversations.create(items=[{"type": "message", "role": "user", "content": "x", "id": "msg_mine-1"}])  # type: ignore[list-item]
    got = await client.conversations.items.retrieve("msg_mine-1", conversation_id=conv.id)
    assert got.id == "msg_mine-1"
    status, body = await call(relay, "POST", f"/v1/conversations/{conv.id}/items",
                              {"items": [{"role": "user", "content": "y", "id": "msg_mine-1"}]})
    rejected(status, body, 400, "items[0].id")


async def test_oversized_bodies_and_conversations(make_relay: Callable[..., Any]) -> None:
    relay = await make_relay(config("memory://", max_bytes=4096))
    client = relay.client()
    # Over server.max_body_bytes: the request itself is refused.
    status, body = await call(relay, "POST", "/v1/conversations", {"items": [{"role": "user", "content": "x" * 70000}]})
    assert status == 413 and body["error"]["code"] == "request_too_large"
    validate_error(body)
    # Under it, but the conversation would pass responses.max_stored_bytes: nothing is stored.
    status, body = await call(relay, "POST", "/v1/conversations", {"items": [{"role": "user", "content": "x" * 5000}]})
    assert rejected(status, body, 413, "items")["code"] == "conversation_too_large"
    conv = await client.conversations.create(items=[{"role": "user", "content": "x" * 2000}])
    status, body = await call(relay, "POST", f"/v1/conversations/{conv.id}/items", {"items": [{"role": "user", "content": "y" * 2500}]})
    rejected(status, body, 413, "items")
    status, body = await call(relay, "POST", f"/v1/conversations/{conv.id}", {"metadata": {f"k{i}": "v" * 500 for i in range(16)}})
    rejected(status, body, 413, "metadata")
    assert len((await client.conversations.items.list(conv.id)).data) == 1
    assert (await client.conversations.retrieve(conv.id)).metadata == {}


async def test_documents_expire_after_the_configured_retention(make_relay: Callable[..., Any]) -> None:
    relay = await make_relay(config("memory://"))
    conv = await relay.client().conversations.create()
    expires, _ = store_of(relay).docs["acme"][f"conversation:{conv.id}"]
    assert 3590 < expires - time.time() <= 3600


async def test_a_conversation_survives_a_restart_on_sqlite(make_relay: Callable[..., Any], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    first = await make_relay(config(url))
    conv = await first.client().conversations.create(metadata={"a": "b"}, items=TURN)  # type: ignore[arg-type]
    before = await call(first, "GET", f"/v1/conversations/{conv.id}/items?include=reasoning.encrypted_content")
    await first.server.close()
    second = await make_relay(config(url))
    assert (await second.client().conversations.retrieve(conv.id)).metadata == {"a": "b"}
    assert await call(second, "GET", f"/v1/conversations/{conv.id}/items?include=reasoning.encrypted_content") == before


async def test_two_instances_share_conversations_on_redis(make_relay: Callable[..., Any]) -> None:
    server = RedisServer()
    try:
        one, two = await make_relay(config(server.url)), await make_relay(config(server.url))
        conv = await one.client().conversations.create(items=TURN[:1])
        await two.client().conversations.items.create(conv.id, items=TURN[1:3])  # type: ignore[arg-type]
        listed = await call(one, "GET", f"/v1/conversations/{conv.id}/items?order=asc")
        validate("ConversationItemList", listed[1])
        assert [i["type"] for i in listed[1]["data"]] == ["message", "reasoning", "function_call"]
        await sdk_error(two.client(GLOBEX_KEY).conversations.retrieve(conv.id), 404, "conversation_id")
        await two.client().conversations.delete(conv.id)
        await sdk_error(one.client().conversations.retrieve(conv.id), 404, "conversation_id")
    finally:
        server.stop()


# --- the interface POST /v1/responses calls --------------------------------------------
async def test_items_and_append_for_responses(relay: Relay) -> None:
    convs = relay.server.app[CONVERSATIONS]
    conv = await relay.client().conversations.create(items=TURN[:1])
    history = await convs.items("acme", conv.id)
    # One repeats an id the conversation holds, one has a malformed id: both get fresh ones.
    request_input = [{"role": "user", "content": "Again?", "id": history[0]["id"]}, {"role": "user", "content": "!", "id": "a b"}]
    output = [{"type": "message", "id": "msg_out1", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Yes.", "annotations": [], "logprobs": []}]}, TURN[1]]
    await convs.append("acme", conv.id, request_input + output)
    items = await convs.items("acme", conv.id)
    assert [i["type"] for i in items] == ["message", "message", "message", "message", "reasoning"]
    assert len({i["id"] for i in items}) == 5 and items[3]["id"] == "msg_out1" and items[2]["id"] != "a b"
    assert items[4]["encrypted_content"] == "opaque=="  # history keeps what the endpoints hide
    for item in items:
        validate("Item", item)  # each a Responses input item
    for tenant, ident in (("globex", conv.id), ("acme", "conv_unknown")):
        with pytest.raises(RelayError) as info:
            await convs.items(tenant, ident)
        assert (info.value.status, info.value.param) == (404, "conversation")
        with pytest.raises(RelayError) as info:
            await convs.append(tenant, ident, request_input)
        assert (info.value.status, info.value.param) == (404, "conversation")
    with pytest.raises(RelayError) as info:
        await convs.items("acme", "not-a-conversation")
    assert (info.value.status, info.value.param) == (400, "conversation")
    with pytest.raises(RelayError) as info:
        await convs.append("acme", conv.id, [{"type": "mystery"}])
    assert (info.value.status, info.value.param) == (400, "conversation[0].type")


async def test_concurrent_appends_in_one_process_all_land(make_relay: Callable[..., Any], tmp_path: Path) -> None:
    # SQLite answers from a thread, so unserialized read-modify-writes would interleave and lose items.
    relay = await make_relay(config(f"sqlite:///{tmp_path / 'relay.db'}"))
    convs = relay.server.app[CONVERSATIONS]
    conv = await relay.client().conversations.create()
    await asyncio.gather(*(convs.append("acme", conv.id, [{"role": "user", "content": f"m{i}"}]) for i in range(20)))
    texts = sorted(i["content"][0]["text"] for i in await convs.items("acme", conv.id))
    assert texts == sorted(f"m{i}" for i in range(20))
    assert len(convs.locks) == 0  # nothing kept once no one waits


# --- fuzzing: any item body gets a spec-valid answer, and what is stored lists spec-valid ----
HOSTILE = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))
TEXT = st.text(max_size=6)


def mostly(valid: Any) -> Any:
    """Usually a valid value, sometimes anything."""
    return st.integers(0, 9).flatmap(lambda i: valid if i else HOSTILE)


USER_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("input_text"), "text": mostly(TEXT)}),
    st.fixed_dictionaries({"type": st.just("input_image"), "image_url": mostly(st.just("https://example.com/a.png"))},
                          optional={"detail": mostly(st.sampled_from(["auto", "low", "original"]))}),
    st.fixed_dictionaries({"type": st.just("input_file"), "file_data": mostly(st.just("data:application/pdf;base64,AA=="))},
                          optional={"filename": mostly(TEXT), "detail": mostly(st.sampled_from(["low", "high"]))}),
    st.fixed_dictionaries({"type": mostly(st.sampled_from(["output_text", "refusal"]))}),
)
URL_CITATION = {"type": "url_citation", "url": "https://example.com", "start_index": 0, "end_index": 1, "title": "t", "x": 1}
LOGPROB = {"token": "a", "logprob": -1, "bytes": [97], "top_logprobs": [{"token": "b", "logprob": -2.5, "bytes": [98]}]}
ASSISTANT_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("output_text"), "text": mostly(TEXT)},
                          optional={"annotations": mostly(st.lists(mostly(st.just(URL_CITATION)), max_size=2)),
                                    "logprobs": mostly(st.lists(mostly(st.just(LOGPROB)), max_size=2))}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": mostly(TEXT)}),
)
COMMON = {"id": mostly(st.from_regex(r"msg_[a-z0-9]{1,6}", fullmatch=True)),
          "status": mostly(st.sampled_from(["completed", "in_progress", "incomplete"]))}
ITEM = st.one_of(
    st.fixed_dictionaries({"role": mostly(st.sampled_from(["user", "system", "developer"])),
                           "content": mostly(st.one_of(TEXT, st.lists(USER_PART, max_size=3)))},
                          optional={"type": mostly(st.just("message")), **COMMON}),
    st.fixed_dictionaries({"type": st.just("message"), "role": st.just("assistant"),
                           "content": mostly(st.one_of(TEXT, st.lists(ASSISTANT_PART, max_size=2)))},
                          optional={"phase": mostly(st.just("commentary")), **COMMON}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": mostly(st.just("call_1")), "name": mostly(st.just("f")),
                           "arguments": mostly(st.just("{}"))}, optional={"namespace": mostly(TEXT), **COMMON}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": mostly(st.just("call_1")),
                           "output": mostly(st.one_of(TEXT, st.lists(USER_PART, max_size=2)))}, optional=COMMON),
    st.fixed_dictionaries({"type": st.just("reasoning"), "summary": mostly(st.lists(
        st.fixed_dictionaries({"type": st.just("summary_text"), "text": mostly(TEXT)}), max_size=2))},
        optional={"encrypted_content": mostly(TEXT), **COMMON}),
    mostly(st.fixed_dictionaries({"type": st.sampled_from(["item_reference", "web_search_call", "x"])})),
)


@pytest.fixture
async def fuzz_relay(make_relay: Callable[..., Any]) -> Relay:
    return await make_relay(config("memory://"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(new=st.lists(ITEM, min_size=1, max_size=3), metadata=mostly(st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=3))))
async def test_any_items_get_a_spec_valid_answer(fuzz_relay: Relay, new: list[Any], metadata: Any) -> None:
    status, body = await call(fuzz_relay, "POST", "/v1/conversations", {"items": new, "metadata": metadata})
    if status != 200:
        rejected(status, body, 400, body["error"]["param"])
        assert body["error"]["param"], body
        return
    validate("ConversationResource", body)
    for include in ("", "?include=reasoning.encrypted_content&include=message.input_image.image_url"
                        "&include=message.output_text.logprobs"):
        status, listed = await call(fuzz_relay, "GET", f"/v1/conversations/{body['id']}/items{include}")
        assert status == 200
        validate("ConversationItemList", listed)
    for item in await fuzz_relay.server.app[CONVERSATIONS].items("acme", body["id"]):
        validate("Item", item)
