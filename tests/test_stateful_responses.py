"""Stored responses and chains by `previous_response_id`, with the official openai SDK, on a
chat-only channel, an Anthropic channel, a native Responses channel and the mock. What the
channel was sent is read on the fake upstream; every body is validated against the spec."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from .spec import validate, validate_error
from .support import ACME_KEY, GLOBEX_KEY, anthropic_channel, base_config, respond

TOOL = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}]
GLOBEX_TOO = "- name: acme-b\n  keys: [sk-other]\n  models: ['*']\n"


@pytest.fixture
async def relay(make_relay, fake_openai, fake_anthropic):
    return await make_relay(base_config(fake_openai.url, extra_channels=anthropic_channel(fake_anthropic.url))
                            .replace('"broken-*", "slow-*"]', '"broken-*", "slow-*", "claude-*"]'))


def chat_turns(messages):
    """(role, text) of a forwarded chat request."""
    return [(m["role"], m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])) for m in messages]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model, upstream", [("gpt-4.1-mini", "openai"), ("claude-text", "anthropic")])
async def test_a_three_turn_chain_sends_the_whole_history_in_order(relay, fake_openai, fake_anthropic, stream, model, upstream):
    client = relay.client()
    first = await respond(client, stream, model=model, input="one", instructions="Be brief.")
    second = await respond(client, stream, model=model, input="two", previous_response_id=first.id)
    third = await respond(client, stream, model=model, input=[{"role": "user", "content": "three"}], previous_response_id=second.id)
    assert third.previous_response_id == second.id and third.status == "completed"
    fake = fake_openai if upstream == "openai" else fake_anthropic
    sent = fake.last.body
    if upstream == "openai":
        turns = chat_turns(sent["messages"])
        # instructions are the request's own: the first turn's are not carried over
        assert turns == [("user", "one"), ("assistant", first.output_text), ("user", "two"),
                         ("assistant", second.output_text), ("user", "three")]
    else:
        assert "system" not in sent
        texts = [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(b.get("text", "") for b in m["content"]))
                 for m in sent["messages"]]
        assert texts == [("user", "one"), ("assistant", first.output_text), ("user", "two"),
                         ("assistant", second.output_text), ("user", "three")]
    got = await client.responses.retrieve(third.id)
    assert got.id == third.id and got.output_text == third.output_text
    validate("Response", got.model_dump(mode="json", exclude_unset=True))


async def test_instructions_apply_to_their_own_request_only(relay, fake_openai):
    client = relay.client()
    first = await client.responses.create(model="gpt-4.1-mini", input="one", instructions="Old rules.")
    await client.responses.create(model="gpt-4.1-mini", input="two", previous_response_id=first.id, instructions="New rules.")
    messages = fake_openai.last.body["messages"]
    assert [m["content"] for m in messages if m["role"] == "system"] == ["New rules."]
    assert messages[0] == {"role": "system", "content": "New rules."}


async def test_a_tool_round_trip_continues_with_only_the_call_output(relay, fake_openai):
    client = relay.client()
    first = await client.responses.create(model="gpt-tool", input="run it", tools=TOOL)
    call = next(i for i in first.output if i.type == "function_call")
    await client.responses.create(model="gpt-4.1-mini", previous_response_id=first.id, tools=TOOL,
                                  input=[{"type": "function_call_output", "call_id": call.call_id, "output": "hi"}])
    messages = fake_openai.last.body["messages"]
    assert messages[0] == {"role": "user", "content": "run it"}
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "hi"}
    # an output for a call the chain never made is the client's error, named in its own input
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "previous_response_id": first.id,
                                              "input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]})
    err = json.loads(await resp.read())
    assert resp.status == 400 and err["error"]["param"] == "input[0].call_id"
    validate_error(err)


async def test_a_native_channel_gets_the_history_not_the_id(relay, fake_openai):
    client = relay.client()
    first = await client.responses.create(model="gpt-native", input="one")
    assert first.id.startswith("resp_") and first.model == "gpt-native"
    await client.responses.create(model="gpt-native", input="two", previous_response_id=first.id)
    sent = fake_openai.last.body
    assert "previous_response_id" not in sent
    assert [i.get("role") for i in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][1]["content"][0]["text"] == first.output_text
    assert "id" not in sent["input"][0]  # Relay's listing ids stay with Relay


async def test_retrieve_input_items_pages_and_delete(relay):
    client = relay.client()
    first = await client.responses.create(model="gpt-4.1-mini", input="one")
    second = await client.responses.create(model="gpt-4.1-mini", input="two", previous_response_id=first.id)
    third = await client.responses.create(model="gpt-4.1-mini", input="three", previous_response_id=second.id)
    resp, raw = await relay.get_json(f"/v1/responses/{third.id}/input_items?order=asc&limit=2")
    validate("ResponseItemList", raw)
    assert raw["has_more"] and [i["type"] for i in raw["data"]] == ["message", "message"]
    asc = [i.id async for i in client.responses.input_items.list(third.id, order="asc", limit=2)]
    desc = [i.id async for i in client.responses.input_items.list(third.id, order="desc", limit=2)]
    assert len(asc) == 5 and desc == asc[::-1] and len(set(asc)) == 5
    _, before = await relay.get_json(f"/v1/responses/{third.id}/input_items?order=asc&before={asc[3]}&limit=2")
    assert [i["id"] for i in before["data"]] == asc[1:3] and before["has_more"]
    _, raw = await relay.get_json(f"/v1/responses/{third.id}")
    validate("Response", raw)
    assert raw["previous_response_id"] == second.id and raw["store"] is True
    deleted = await relay.delete(f"/v1/responses/{second.id}")
    assert deleted == (200, {"id": second.id, "object": "response", "deleted": True})
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.retrieve(second.id)
    validate_error(e.value.body and {"error": e.value.body})
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.create(model="gpt-4.1-mini", input="x", previous_response_id=second.id)
    assert e.value.param == "previous_response_id"
    assert (await relay.delete(f"/v1/responses/{second.id}"))[0] == 404
    status, err = await relay.get_json(f"/v1/responses/{third.id}/input_items?after=msg_nope")
    assert status.status == 400 and err["error"]["param"] == "after"


async def test_store_false_is_neither_retrievable_nor_continuable(relay, fake_openai):
    client = relay.client()
    unstored = await client.responses.create(model="gpt-4.1-mini", input="one", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.create(model="gpt-4.1-mini", input="two", previous_response_id=unstored.id)
    assert e.value.param == "previous_response_id"


async def test_another_tenants_response_is_not_found_on_every_endpoint(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url, extra_tenants=GLOBEX_TOO))
    mine = await relay.client().responses.create(model="gpt-4.1-mini", input="secret")
    other = relay.client("sk-other")
    for attempt in (other.responses.retrieve(mine.id), other.responses.input_items.list(mine.id),
                    other.responses.delete(mine.id), other.responses.cancel(mine.id),
                    other.responses.create(model="gpt-4.1-mini", input="x", previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError) as e:
            await attempt
        assert mine.id in e.value.message and "secret" not in str(e.value.body)
    assert (await relay.client().responses.retrieve(mine.id)).output_text == mine.output_text  # still there
    _, err = await relay.get_json("/v1/responses/..%2F..%2Fetc", key=GLOBEX_KEY)
    validate_error(err)


async def test_a_chain_continues_after_a_restart_on_sqlite(make_relay, fake_openai, tmp_path):
    config = base_config(fake_openai.url).replace("url: memory://", f"url: sqlite:///{tmp_path}/relay.db")
    before = await make_relay(config)
    first = await before.client().responses.create(model="gpt-4.1-mini", input="one")
    await before.server.close()
    after = await make_relay(config)
    second = await after.client().responses.create(model="gpt-4.1-mini", input="two", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert [m["content"] for m in fake_openai.last.body["messages"]][0] == "one"


async def test_a_response_too_big_to_store_is_refused_before_the_upstream(make_relay, fake_openai):
    relay = await make_relay(base_config(fake_openai.url) + "responses:\n  max_stored_bytes: 2048\n")
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "x" * 4000})
    err = json.loads(await resp.read())
    assert resp.status == 413 and err["error"]["code"] == "stored_response_too_large"
    validate_error(err)
    assert fake_openai.requests == []
    assert (await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "input": "x" * 4000, "store": False})).status == 200


async def test_background_create_poll_completed(relay):
    client = relay.client()
    queued = await client.responses.create(model="gpt-4.1-mini", input="one", background=True)
    assert queued.status in ("queued", "in_progress") and queued.background is True
    validate("Response", queued.model_dump(mode="json", exclude_unset=True))
    for _ in range(200):
        got = await client.responses.retrieve(queued.id)
        if got.status == "completed":
            break
        await asyncio.sleep(0.01)
    assert got.status == "completed" and got.output_text and got.id == queued.id
    validate("Response", got.model_dump(mode="json", exclude_unset=True))
    assert (await client.responses.create(model="gpt-4.1-mini", input="two", previous_response_id=got.id)).status == "completed"


async def test_background_cancel_cuts_the_upstream_call(make_relay, fake_openai):
    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel))
    client = relay.client()
    queued = await client.responses.create(model="gpt-watched", input="one", background=True)
    for _ in range(200):
        if fake_openai.requests:
            break
        await asyncio.sleep(0.01)
    cancelled = await client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    validate("Response", cancelled.model_dump(mode="json", exclude_unset=True))
    for _ in range(200):
        if fake_openai.hung_up:
            break
        await asyncio.sleep(0.01)
    assert fake_openai.hung_up == 1
    assert (await client.responses.retrieve(queued.id)).status == "cancelled"
    not_bg = await client.responses.create(model="gpt-4.1-mini", input="x")
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(not_bg.id)


async def test_a_background_run_cut_by_a_shutdown_is_failed(make_relay, fake_openai, tmp_path):
    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    config = base_config(fake_openai.url, extra_channels=channel).replace("url: memory://", f"url: sqlite:///{tmp_path}/relay.db")
    before = await make_relay(config)
    queued = await before.client().responses.create(model="gpt-watched", input="one", background=True)
    await before.server.close()
    after = await make_relay(config)
    got = await after.client().responses.retrieve(queued.id)
    assert got.status == "failed" and "shut down" in got.error.message


async def test_background_streaming_streams_and_stays_retrievable(relay):
    client = relay.client()
    stream = await client.responses.create(model="gpt-4.1-mini", input="one", background=True, stream=True)
    events = [ev async for ev in stream]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    final = events[-1].response
    assert final.background is True
    got = await client.responses.retrieve(final.id)
    assert got.status == "completed" and got.output_text == final.output_text
    # a client that goes away does not stop the run
    stream = await client.responses.create(model="gpt-4.1-mini", input="two", background=True, stream=True)
    first = await stream.__anext__()
    await stream.close()
    for _ in range(200):
        got = await client.responses.retrieve(first.response.id)
        if got.status == "completed":
            break
        await asyncio.sleep(0.01)
    assert got.status == "completed"


async def test_a_background_run_whose_instance_crashed_reads_as_failed(relay):
    from relay.stateful.records import KEY

    from .support import store_of

    _, queued = await relay.post_json("/v1/responses", {"model": "gpt-4.1-mini", "input": "one"})
    queued.update(status="in_progress", background=True, id="resp_" + "ab" * 12, output=[])
    del queued["completed_at"], queued["usage"]
    record = {"response": queued, "items": [], "model": "gpt-4.1-mini"}
    await store_of(relay).doc_put("acme", KEY + queued["id"], json.dumps(record), 60)  # a run nobody beats for
    _, got = await relay.get_json(f"/v1/responses/{queued['id']}")
    assert got["status"] == "failed" and "restarted or crashed" in got["error"]["message"]
    validate("Response", got)


async def test_a_background_run_the_upstream_fails_is_failed_with_a_spec_code(relay):
    queued = await relay.client().responses.create(model="broken-500", input="one", background=True)
    for _ in range(300):
        _, got = await relay.get_json(f"/v1/responses/{queued.id}")
        if got["status"] == "failed":
            break
        await asyncio.sleep(0.01)
    assert got["status"] == "failed" and got["error"]["code"] == "server_error"
    validate("Response", got)


async def test_a_stored_response_replays_as_a_spec_valid_stream(relay):
    from .spec import validate_response_event
    from .support import responses_events

    done = await relay.client().responses.create(model="gpt-tool", input="run it", tools=TOOL)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{relay.url}/v1/responses/{done.id}?stream=true", headers={"authorization": f"Bearer {ACME_KEY}"}) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            events = responses_events((await r.read()).decode())
    for ev in events:
        validate_response_event(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["id"] == done.id
    assert [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"] == [i.type for i in done.output]


async def test_background_runs_are_capped_per_tenant(make_relay, fake_openai):
    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel) + "responses:\n  max_background: 2\n")
    client = relay.client()
    running = [await client.responses.create(model="gpt-watched", input="x", background=True) for _ in range(2)]
    with pytest.raises(openai.RateLimitError) as e:
        await client.responses.create(model="gpt-watched", input="x", background=True)
    assert e.value.code == "too_many_background_responses"
    await client.responses.cancel(running[0].id)
    assert (await client.responses.create(model="gpt-watched", input="x", background=True)).status == "queued"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_response_in_a_conversation_reads_and_extends_it(relay, fake_openai, stream):
    client = relay.client()
    conv = await client.conversations.create(items=[{"type": "message", "role": "user", "content": "My name is Ada."}])
    first = await respond(client, stream, model="gpt-4.1-mini", input="Hello?", conversation=conv.id)
    assert first.conversation.id == conv.id
    await respond(client, stream, model="gpt-4.1-mini", input="Again.", conversation={"id": conv.id}, store=False)
    assert [m["content"] for m in fake_openai.last.body["messages"]] == ["My name is Ada.", "Hello?", first.output_text, "Again."]
    items = [i async for i in client.conversations.items.list(conv.id, order="asc")]
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "user"), ("message", "assistant"),
                                                 ("message", "user"), ("message", "assistant")]
    _, raw = await relay.get_json(f"/v1/conversations/{conv.id}/items?order=asc")
    validate("ConversationItemList", raw)
    await client.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.create(model="gpt-4.1-mini", input="x", conversation=conv.id)
    assert e.value.param == "conversation"


async def test_a_cancelled_background_response_replays_as_a_valid_stream(make_relay, fake_openai):
    from .spec import validate_response_event
    from .support import responses_events

    channel = f"- name: watched\n  type: openai\n  base_url: {fake_openai.url}/v1\n  models: {{gpt-watched: hang-watched}}\n"
    relay = await make_relay(base_config(fake_openai.url, extra_channels=channel))
    queued = await relay.client().responses.create(model="gpt-watched", input="one", background=True)
    await relay.client().responses.cancel(queued.id)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{relay.url}/v1/responses/{queued.id}?stream=true", headers={"authorization": f"Bearer {ACME_KEY}"}) as r:
            events = responses_events((await r.read()).decode())
    for ev in events:
        validate_response_event(ev)
    assert events[-1]["response"]["status"] == "cancelled"


async def test_an_item_reference_to_the_chain_is_the_item_itself(relay, fake_openai):
    client = relay.client()
    first = await client.responses.create(model="gpt-4.1-mini", input="Remember: blue.")
    items = [i async for i in client.responses.input_items.list(first.id)]
    await client.responses.create(model="gpt-4.1-mini", previous_response_id=first.id,
                                  input=[{"type": "item_reference", "id": items[0].id}, {"role": "user", "content": "Colour?"}])
    assert [m["content"] for m in fake_openai.last.body["messages"]] == ["Remember: blue.", first.output_text,
                                                                          "Remember: blue.", "Colour?"]
    resp = await relay.post("/v1/responses", {"model": "gpt-4.1-mini", "previous_response_id": first.id,
                                              "input": [{"type": "item_reference", "id": "msg_unknown"}]})
    err = json.loads(await resp.read())
    assert resp.status == 400 and err["error"]["param"] == "input[0].type"


async def test_a_tool_round_trip_on_an_anthropic_channel_continues_with_only_the_call_output(relay, fake_anthropic):
    client = relay.client()
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = await client.responses.create(model="claude-tool", input="Weather in SF?", tools=tools)
    call = next(i for i in first.output if i.type == "function_call")
    await client.responses.create(model="claude-text", previous_response_id=first.id, tools=tools,
                                  input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18°C"}])
    messages = fake_anthropic.last.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    use = next(b for b in messages[1]["content"] if b["type"] == "tool_use")
    result = next(b for b in messages[2]["content"] if b["type"] == "tool_result")
    assert use["id"] == call.call_id == result["tool_use_id"] and "18°C" in json.dumps(result, ensure_ascii=False)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_three_turn_chain_on_the_mock_channel(relay, stream):
    client = relay.client()
    first = await respond(client, stream, model="demo", input="one two three four five six seven eight")
    second = await respond(client, stream, model="demo", input="again", previous_response_id=first.id)
    third = await respond(client, stream, model="demo", input="and again", previous_response_id=second.id)
    items = [i async for i in client.responses.input_items.list(third.id, order="asc")]
    assert [(i.role, i.content[0].text) for i in items] == [
        ("user", "one two three four five six seven eight"), ("assistant", first.output_text), ("user", "again"),
        ("assistant", second.output_text), ("user", "and again")]
    # the whole history went upstream: the mock's prompt estimate grows with it
    assert third.usage.input_tokens > second.usage.input_tokens > first.usage.input_tokens


async def test_input_items_show_reasoning_encrypted_content_only_when_included(relay):
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque-blob"}
    first = await relay.client().responses.create(model="gpt-4.1-mini", input=[{"role": "user", "content": "hi"}, reasoning,
                                                                                {"role": "assistant", "content": "hello"},
                                                                                {"role": "user", "content": "again"}])
    _, plain = await relay.get_json(f"/v1/responses/{first.id}/input_items?order=asc")
    _, full = await relay.get_json(f"/v1/responses/{first.id}/input_items?order=asc&include=reasoning.encrypted_content")
    for listing in (plain, full):
        validate("ResponseItemList", listing)
    assert "encrypted_content" not in plain["data"][1] and full["data"][1]["encrypted_content"] == "opaque-blob"
    bad, err = await relay.get_json(f"/v1/responses/{first.id}/input_items?include=everything")
    assert bad.status == 400 and err["error"]["param"] == "include"
