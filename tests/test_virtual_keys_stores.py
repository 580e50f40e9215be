"""Virtual keys in the shared stores: SQLite (the CLI and a running `relay serve` see the same
keys, which survive a restart; a key in both the YAML and the store stops start and reload) and
Redis (two instances: a key made on one works on the other, a revocation reaches it within 1 s)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from relay.app import create_app
from relay.ops import ops_app
from relay.vkeys.appkeys import KEY_CLOCK, KEYSTORE
from relay_config.loader import parse_config

from .proc import RelayProcess
from .redis_server import RedisClusterServers, RedisServer
from .support import ACME_KEY, ADMIN, ENV, Clock, Relay, relay_cli

CONFIG = f"""\
server:
  admin_key: {ADMIN}
store:
  url: %(store)s
tenants:
  - name: acme
    keys: ["{ACME_KEY}"%(extra_key)s]
channels:
  - name: demo
    type: mock
    models: [demo]
"""


def write_config(path: Path, store: str, extra_key: str | None = None) -> Path:
    path.write_text(CONFIG % {"store": store, "extra_key": f', "{extra_key}"' if extra_key else ""})
    return path


def http(method: str, url: str, body: Any = None, key: str = ADMIN) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def chat(url: str, key: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content or ""


def refused(url: str, key: str) -> bool:
    try:
        chat(url, key)
        return False
    except openai.AuthenticationError:
        return True


def test_sqlite_cli_and_server_share_keys_across_restarts(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'relay.db'}"
    config = write_config(tmp_path / "relay.yaml", store)
    made = relay_cli("keys", "create", "-c", str(config), "--tenant", "acme", "--name", "ci", "--rpm", "100", "--format", "json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    by_cli, by_cli_id = first["secret"], first["data"][0]["id"]
    assert first["data"][0]["limits"] == {"rpm": 100}

    server = RelayProcess(config)
    try:
        assert chat(server.url, by_cli)  # made by the CLI before the server started
        status, by_api = http("POST", server.ops_url + "/admin/keys", {"tenant": "acme", "name": "api"})
        assert status == 201
        assert chat(server.url, by_api["secret"])
        listed = relay_cli("keys", "list", "-c", str(config), "--format", "json", cwd=tmp_path)
        assert listed.returncode == 0 and by_api["secret"] not in listed.stdout and by_cli not in listed.stdout
        assert {k["id"] for k in json.loads(listed.stdout)["data"]} == {by_cli_id, by_api["id"]}
        table = relay_cli("keys", "list", "-c", str(config), cwd=tmp_path).stdout
        assert by_cli_id in table and "hint" in table.splitlines()[0]

        # Revoked by the CLI: the running server refuses it within its 1 s cache.
        assert relay_cli("keys", "revoke", "-c", str(config), by_cli_id, cwd=tmp_path).returncode == 0
        deadline = time.monotonic() + 3
        while not refused(server.url, by_cli):
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.1)

        # A YAML key that is also a virtual key: the reload is rejected, naming the key id.
        write_config(config, store, extra_key=by_api["secret"])
        status, answer = http("POST", server.ops_url + "/admin/reload")
        assert status == 400 and any(by_api["id"] in e for e in answer["errors"])
        assert by_api["secret"] not in json.dumps(answer)
    finally:
        server.stop()
    assert by_api["secret"] not in server.log and by_cli not in server.log
    # Only digests are stored: no secret anywhere in the database files.
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("relay.db*"))
    assert b"vkey_digests" in stored and by_api["secret"].encode() not in stored and by_cli.encode() not in stored

    # ...and a start is refused.
    conflicted = RelayProcess(config)  # returns when the process has said something or ended
    assert conflicted.proc.wait(15) == 1
    assert "also configured in the YAML" in conflicted.log and by_api["id"] in conflicted.log
    assert by_api["secret"] not in conflicted.log

    # Restarted on the same file (conflict removed): the key is still there, its usage counted.
    write_config(config, store)
    again = RelayProcess(config)
    try:
        assert chat(again.url, by_api["secret"])
        assert refused(again.url, by_cli)
    finally:
        again.stop()
    usage = relay_cli("usage", "-c", str(config), "--by", "key", "--format", "json", cwd=tmp_path)
    assert usage.returncode == 0, usage.stderr
    rows = json.loads(usage.stdout)["data"]
    assert {(r["key_id"], r["requests"]) for r in rows} == {(by_cli_id, 1), (by_api["id"], 2)}
    shown = relay_cli("keys", "show", "-c", str(config), by_api["id"], "--format", "json", cwd=tmp_path)
    assert json.loads(shown.stdout)["data"][0]["last_used_at"] is not None


def test_cli_validation_and_unknown_ids(tmp_path: Path) -> None:
    config = write_config(tmp_path / "relay.yaml", f"sqlite:///{tmp_path / 'relay.db'}")
    bad = relay_cli("keys", "create", "-c", str(config), "--tenant", "nobody", cwd=tmp_path)
    assert bad.returncode == 2 and "param: tenant" in bad.stderr
    missing = relay_cli("keys", "revoke", "-c", str(config), "key_nope", cwd=tmp_path)
    assert missing.returncode == 1 and "key_nope" in missing.stderr
    made = json.loads(relay_cli("keys", "create", "-c", str(config), "--tenant", "acme", "--format", "json", cwd=tmp_path).stdout)
    key_id = made["data"][0]["id"]
    upd = relay_cli("keys", "update", "-c", str(config), key_id, "--tpm", "500", "--models", "demo", "--disable", "--format", "json", cwd=tmp_path)
    data = json.loads(upd.stdout)["data"][0]
    assert data["limits"] == {"tpm": 500} and data["models"] == ["demo"] and data["disabled"] is True
    rot = json.loads(relay_cli("keys", "rotate", "-c", str(config), key_id, "--grace", "30", "--format", "json", cwd=tmp_path).stdout)
    assert rot["secret"] != made["secret"] and rot["data"][0]["previous_valid_until"] is not None
    import sqlite3
    with sqlite3.connect(tmp_path / "relay.db") as con:
        trail = con.execute("SELECT actor, action, key_id FROM vkey_audit ORDER BY rowid").fetchall()
    assert [(a.startswith("cli:"), action, k) for a, action, k in trail] == [
        (True, "create", key_id), (True, "update", key_id), (True, "rotate", key_id)]


@pytest.fixture(params=["redis", "cluster"])
def redis_server(request: pytest.FixtureRequest):
    server = RedisServer() if request.param == "redis" else RedisClusterServers()
    yield server
    server.stop()


async def start(aiohttp_server: Callable[..., Any], url: str, clock: Clock) -> Relay:
    text = CONFIG % {"store": url, "extra_key": ""}
    app = create_app(parse_config(text, "test.yaml", env=ENV))
    app[KEY_CLOCK] = clock
    server = await aiohttp_server(app, host="127.0.0.1")
    return Relay(server, text, await aiohttp_server(ops_app(server.app), host="127.0.0.1"))


async def test_two_instances_on_redis(aiohttp_server: Callable[..., Any], redis_server: RedisServer | RedisClusterServers) -> None:
    clock_a, clock_b = Clock(time.time()), Clock(time.time())
    a = await start(aiohttp_server, redis_server.url, clock_a)
    b = await start(aiohttp_server, redis_server.url, clock_b)

    async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, url, json=body, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                return r.status, await r.json()

    async def post(relay: Relay, path: str, body: Any = None) -> tuple[int, Any]:
        return await call("POST", relay.ops_url + path, body)

    status, made = await post(a, "/admin/keys", {"tenant": "acme"})
    assert status == 201
    secret = made["secret"]

    async def works(relay: Relay) -> bool:
        try:
            await relay.client(secret).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
            return True
        except openai.AuthenticationError:
            return False

    assert await works(b)  # made on A, used on B
    with redis_server.client() as r:  # only the digest is stored
        read = {"string": r.get, "hash": r.hgetall, "set": r.smembers, "stream": r.xrange}
        dump = repr([(k, read[r.type(k)](k)) for k in redis_server.keys("relay:*")])
    assert made["id"] in dump and made["hint"] in dump and secret not in dump
    assert (await call("GET", b.ops_url + f"/admin/keys/{made['id']}"))[0] == 200
    assert (await call("DELETE", a.ops_url + f"/admin/keys/{made['id']}"))[0] == 200
    assert not await works(a)  # the instance that revoked it: at once
    clock_b.advance(1.0)  # B's cached answer is at most 1 s old
    assert not await works(b)

    # Usage by key is shared too: both instances' calls, counted once each.
    status, made = await post(b, "/admin/keys", {"tenant": "acme"})
    secret = made["secret"]
    assert await works(a) and await works(b)
    await a.server.app[KEYSTORE].flush()  # A's write-behind (B's own is flushed by the query)
    rows = (await call("GET", b.ops_url + f"/admin/usage?key={made['id']}"))[1]["data"]
    assert sum(r["requests"] for r in rows) == 2

    # Redis gone: a virtual key cannot be checked (503, never let in); YAML keys still work.
    redis_server.stop()
    clock_b.advance(1.0)
    with pytest.raises(openai.InternalServerError) as unavailable:
        await b.client(secret).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    assert unavailable.value.status_code == 503 and secret not in str(unavailable.value.body)
    await b.client(ACME_KEY).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
