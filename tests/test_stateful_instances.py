"""Stored responses beyond one process: a chain continued on another Relay sharing a real
redis-server, and a chain on the real Claude CLI channel (the transcript replayed)."""
from __future__ import annotations

import json
import os

import openai
import pytest

from .redis_server import RedisServer
from .support import ENV, base_config, relay_cli, respond
from .support.cli import real_cli_config


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer()
    yield server.url
    server.stop()


async def test_a_chain_created_on_one_instance_continues_on_another(make_relay, fake_openai, redis_url):
    config = base_config(fake_openai.url).replace("url: memory://", f"url: {redis_url}")
    one, two = await make_relay(config), await make_relay(config)
    first = await one.client().responses.create(model="gpt-4.1-mini", input="one")
    second = await two.client().responses.create(model="gpt-4.1-mini", input="two", previous_response_id=first.id)
    assert [m["content"] for m in fake_openai.last.body["messages"]] == ["one", first.output_text, "two"]
    assert (await one.client().responses.retrieve(second.id)).previous_response_id == first.id
    await one.client().responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        await two.client().responses.retrieve(second.id)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chain_on_the_claude_cli_channel_replays_the_transcript(make_relay, fake_anthropic, stream):
    relay = await make_relay(real_cli_config(fake_anthropic.url))
    client = relay.client()

    async def turn(**kw):
        return await respond(client, stream, model="cli-text", **kw)

    first = await turn(input="one")
    second = await turn(input="two", previous_response_id=first.id)
    await turn(input="three", previous_response_id=second.id)
    # the CLI takes a conversation as one transcript message: the whole chain, in order
    sent = fake_anthropic.last.body["messages"]
    transcript = "".join(b.get("text", "") for m in sent for b in (m["content"] if isinstance(m["content"], list) else
                                                                  [{"text": m["content"]}]))
    at = 0
    for said in ("<user>\none", first.output_text, "<user>\ntwo", second.output_text, "three"):
        at = transcript.find(said, at)
        assert at >= 0, (said, transcript[:2000])


async def test_relay_usage_shows_the_bytes_each_tenant_has_stored(make_relay, fake_openai, tmp_path):
    config = base_config(fake_openai.url).replace("url: memory://", f"url: sqlite:///{tmp_path}/relay.db")
    relay = await make_relay(config)
    first = await relay.client().responses.create(model="gpt-4.1-mini", input="one")
    await relay.client().responses.create(model="gpt-4.1-mini", input="two", store=False)
    (tmp_path / "relay.yaml").write_text(config)
    out = relay_cli("usage", "-c", str(tmp_path / "relay.yaml"), "--by", "stored", "--format", "json",
                    env={**os.environ, **ENV})
    assert out.returncode == 0, out.stderr
    rows = {r["tenant"]: r["stored_bytes"] for r in json.loads(out.stdout)["data"]}
    assert rows["globex"] == 0 and len(first.output_text) < rows["acme"] < 20_000
    table = relay_cli("usage", "-c", str(tmp_path / "relay.yaml"), "--by", "stored", env={**os.environ, **ENV})
    assert table.stdout.splitlines()[-1].split() == ["TOTAL", str(rows["acme"])]


@pytest.mark.parametrize("stream", [False, True])
async def test_previous_response_id_resumes_the_cli_session_with_only_the_new_turn(make_relay, fake_anthropic, tmp_path,
                                                                                   monkeypatch, stream):
    from relay.stateful.records import KEY

    from .support import store_of
    from .support.cli import RecordingCli, private_tmp, sessions_cli_config

    private_tmp(tmp_path, monkeypatch)
    cli = RecordingCli(tmp_path)
    relay = await make_relay(sessions_cli_config(fake_anthropic.url, cli.command, tmp_path / "sessions"))
    client = relay.client()

    async def turn(**kw):
        return await respond(client, stream, model="cli-text", **kw)

    for _ in range(12):  # the pinned CLI now and then exits without saving the turn: then no session is kept
        first = await turn(input="first question")
        record = json.loads(await store_of(relay).doc_get("acme", KEY + first.id))
        if record["session"]:
            break
    assert record["session"] and record["channel"] == "cli"
    await turn(input="second question", previous_response_id=first.id)
    run = cli.runs()[-1]
    assert run["argv"][run["argv"].index("--resume") + 1] != record["session"]  # a copy of it: the chain can fork
    sent = json.dumps(run["stdin"], ensure_ascii=False)
    assert "second question" in sent and "first question" not in sent  # only the new turn went on stdin
    history = json.dumps(fake_anthropic.last.body["messages"], ensure_ascii=False)
    assert "first question" in history and first.output_text in history and "second question" in history
