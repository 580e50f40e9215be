"""Channel types from separately installed packages: the example plugin (examples/relay-echo,
installed into the test venv by the Makefile) driven end to end with the openai SDK, its
settings validated like built-in ones, and broken plugins reported as config errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openai
import pytest

from relay_adaptors.kernel.registry import ChannelTypeError, discover, installed
from relay_config.loader import ConfigError, parse_config

from .fakes.echo import KEY, FakeEcho
from .proc import RelayProcess
from .spec import validate, validate_error, validate_response_event
from .support import ACME_KEY, responses_events, serve_fake, sse_frames

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("anthropic", "claude_cli", "mock", "openai")
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello plugin world"}]


def echo_config(echo_url: str) -> str:
    return f"""\
store: {{url: "memory://"}}
router: {{cooldown: {{failures: 100, seconds: 1}}}}
tenants:
  - name: acme
    keys: ["${{ACME_KEY}}"]
channels:
  - name: echo-main
    type: echo
    base_url: {echo_url}
    api_key: {KEY}
    max_words: 50
    timeout: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
    models:
      echo-1: plain
      echo-flaky: unwell
      echo-busy: busy
      echo-rude: rude
      echo-falters: falters
      echo-leaky: leaky
  - name: mock-backup
    type: mock
    priority: 1
    reply: the backup answers
    models: [echo-flaky]
"""


@pytest.fixture
async def fake_echo(aiohttp_server) -> FakeEcho:
    return await serve_fake(FakeEcho(), aiohttp_server)


@pytest.fixture
async def echo_relay(make_relay, fake_echo):
    return await make_relay(echo_config(fake_echo.url))


def test_the_example_plugin_and_the_built_in_types_register_the_same_way():
    types = installed()
    assert not types.broken
    assert (types.types["echo"].package, types.types["echo"].version) == ("relay-echo", "0.1.0")
    assert {n: types.types[n].package for n in BUILT_IN} == dict.fromkeys(BUILT_IN, "relay-gateway")
    assert types.describe(["mock", "echo"]) == "echo (relay-echo 0.1.0); mock (relay-gateway 0.1.0)"


async def test_chat_through_the_plugin(echo_relay, fake_echo):
    raw = await echo_relay.client().chat.completions.with_raw_response.create(model="echo-1", messages=HELLO, temperature=0.2)
    done = raw.parse()
    validate("CreateChatCompletionResponse", done.model_dump(mode="json", exclude_unset=True))
    assert done.choices[0].message.content == "echo: hello plugin world" and done.choices[0].finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.model) == (5, 4, "echo-1")
    assert raw.headers["x-relay-channel"] == "echo-main" and raw.headers["x-relay-ignored-params"] == "temperature"
    got = fake_echo.last  # what went upstream: the Echo protocol, not chat
    assert got.path == "/speak" and got.headers["Echo-Key"] == KEY and got.headers["x-request-id"] == raw.headers["x-request-id"]
    assert got.body == {"voice": "plain", "max_words": 50,
                        "script": [{"who": "director", "line": "be brief"}, {"who": "human", "line": "hello plugin world"}]}


@pytest.mark.parametrize("chunking", ["event", "byte", "random"])
async def test_chat_stream_through_the_plugin(echo_relay, fake_echo, chunking):
    fake_echo.chunking = chunking
    client = echo_relay.client()
    async with client.chat.completions.stream(model="echo-1", messages=HELLO, stream_options={"include_usage": True}) as s:
        final = await s.get_final_completion()
    assert final.choices[0].message.content == "echo: hello plugin world" and final.choices[0].finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (5, 4)
    assert fake_echo.last.path == "/speak/live"
    resp, text = await echo_relay.raw_stream("/v1/chat/completions", {"model": "echo-1", "messages": HELLO, "stream": True})
    assert resp.status == 200 and text.endswith("data: [DONE]\n\n")
    for _, data in sse_frames(text)[:-1]:
        validate("CreateChatCompletionStreamResponse", json.loads(data))


async def test_max_tokens_become_max_words_and_a_cut_answer_is_length(echo_relay, fake_echo):
    done = await echo_relay.client().chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": "one two three"}], max_completion_tokens=2)
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("echo: one", "length")
    assert fake_echo.last.body["max_words"] == 2


async def test_responses_through_the_plugin(echo_relay):
    client = echo_relay.client()
    created = await client.responses.create(model="echo-1", instructions="be brief", input="hello responses")
    assert created.status == "completed" and created.output_text == "echo: hello responses"
    assert (created.usage.input_tokens, created.usage.output_tokens) == (4, 3)
    async with client.responses.stream(model="echo-1", instructions="be brief", input="hello responses") as s:
        deltas = [ev.delta async for ev in s if ev.type == "response.output_text.delta"]
        final = await s.get_final_response()
    assert "".join(deltas) == final.output_text == "echo: hello responses" and final.usage.total_tokens == 7
    resp, body = await echo_relay.post_json("/v1/responses", {"model": "echo-1", "input": "hi", "max_output_tokens": 1})
    validate("Response", body)
    assert (body["status"], body["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    resp, text = await echo_relay.raw_stream("/v1/responses", {"model": "echo-1", "input": "hi", "stream": True})
    for ev in responses_events(text):
        validate_response_event(ev)


async def test_upstream_errors_reach_the_client_in_its_protocol(echo_relay):
    client = echo_relay.client()
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="echo-rude", messages=HELLO)
    assert "refused the request: that voice is not allowed here" in bad.value.message
    assert bad.value.response.headers["x-relay-attempts"] == "1"
    with pytest.raises(openai.RateLimitError) as busy:
        await client.responses.create(model="echo-busy", input="hi")
    assert busy.value.response.headers["retry-after"] == "7"  # Echo's retry_in, as the client's header
    with pytest.raises(openai.APIStatusError) as leaky:
        await client.chat.completions.create(model="echo-leaky", messages=HELLO)
    assert leaky.value.status_code == 502 and "key [redacted] is over quota" in leaky.value.message and KEY not in str(leaky.value.body)
    resp, body = await echo_relay.post_json("/v1/chat/completions", {"model": "echo-rude", "messages": HELLO, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]})
    validate_error(body)
    assert resp.status == 400 and body["error"]["param"] == "tools"  # refused by the plugin before any upstream call


async def test_a_failure_mid_stream_ends_the_stream_with_an_error(echo_relay):
    resp, text = await echo_relay.raw_stream("/v1/chat/completions", {"model": "echo-falters", "messages": HELLO, "stream": True})
    frames = [json.loads(data) for _, data in sse_frames(text)]
    assert "".join(f["choices"][0]["delta"].get("content") or "" for f in frames[:-1]) == "echo: hello "
    assert "failed mid-stream: lost the thread" in frames[-1]["error"]["message"] and "[DONE]" not in text
    resp, text = await echo_relay.raw_stream("/v1/responses", {"model": "echo-falters", "input": "hello plugin", "stream": True})
    events = responses_events(text)
    assert events[-1]["type"] == "response.failed"
    assert "lost the thread" in events[-1]["response"]["error"]["message"]


async def test_failover_from_the_plugin_to_a_built_in_channel(echo_relay, fake_echo):
    client = echo_relay.client()
    raw = await client.chat.completions.with_raw_response.create(model="echo-flaky", messages=HELLO)
    assert raw.parse().choices[0].message.content == "the backup answers"
    stream = await client.chat.completions.create(model="echo-flaky", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "the backup answers"
    created = await client.responses.with_raw_response.create(model="echo-flaky", input="hi")
    assert created.parse().output_text == "the backup answers"
    events = await client.responses.create(model="echo-flaky", input="hi", stream=True)
    final = [ev async for ev in events][-1]
    assert final.type == "response.completed" and final.response.output_text == "the backup answers"
    for headers in (raw.headers, stream.response.headers, created.headers, events.response.headers):
        assert (headers["x-relay-channel"], headers["x-relay-attempts"]) == ("mock-backup", "2")
    assert [r.body["voice"] for r in fake_echo.requests] == ["unwell"] * 4  # the echo channel was asked each time


async def test_messages_through_the_plugin_with_the_anthropic_sdk(echo_relay, fake_echo):
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=echo_relay.url, api_key=ACME_KEY, max_retries=0, timeout=30)
    said = [{"role": "user", "content": "hello plugin world"}]
    msg = await client.messages.create(model="echo-1", max_tokens=50, system="be brief", messages=said)
    assert msg.content[0].text == "echo: hello plugin world" and msg.stop_reason == "end_turn" and msg.model == "echo-1"
    assert fake_echo.last.body["script"][0] == {"who": "director", "line": "be brief"}
    async with client.messages.stream(model="echo-1", max_tokens=50, messages=said) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "echo: hello plugin world" and final.usage.output_tokens == 4
    with pytest.raises(anthropic.BadRequestError) as rude:  # the upstream's refusal, in Anthropic's shape
        await client.messages.create(model="echo-rude", max_tokens=50, messages=said)
    assert "that voice is not allowed here" in rude.value.message
    raw = await client.messages.with_raw_response.create(model="echo-flaky", max_tokens=50, messages=said)
    assert (await raw.parse()).content[0].text == "the backup answers"  # failed over to the built-in mock channel
    assert (raw.headers["x-relay-channel"], raw.headers["x-relay-attempts"]) == ("mock-backup", "2")
    async with client.messages.stream(model="echo-flaky", max_tokens=50, messages=said) as stream:
        assert (await stream.get_final_message()).content[0].text == "the backup answers"


def errors_of(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", env={}, **kw)
    return exc.value.lines()


TENANT = "tenants:\n  - name: a\n    keys: [k]\nchannels:\n"


def test_plugin_settings_are_validated_with_file_line_and_path():
    text = TENANT + textwrap.dedent("""\
          - name: e
            type: echo
            max_words: 0
            colour: red
            models: [x]
        """)
    assert errors_of(text) == [
        "c.yaml:5 channels[0].base_url: required",
        "c.yaml:7 channels[0].max_words: Input should be greater than or equal to 1",
        "c.yaml:8 channels[0].colour: unknown key",
    ]
    assert errors_of(TENANT + "  - name: e\n    models: [x]\n  - just a string\n") == [
        "c.yaml:5 channels[0]: missing 'type' (one of anthropic, claude_cli, echo, mock, openai)",
        "c.yaml:7 channels[1]: a channel must be a mapping",
    ]


BROKEN_PLUGINS = """\
[relay.adaptors]
broken = relay_test_broken_plugin:CHANNEL_TYPE
notatype = relay_test_odd_plugins:NOT_A_TYPE
misnamed = relay_test_odd_plugins:OTHER
loose = relay_test_odd_plugins:LOOSE
echo = relay_test_odd_plugins:ECHO
crashy = relay_test_odd_plugins:CRASHY
"""
ODD_PLUGINS = """\
from relay_adaptors.kernel.registry import ChannelType
from relay_config.schema import ChannelBase
from relay_echo import CHANNEL_TYPE as ECHO

NOT_A_TYPE = {"name": "notatype"}
OTHER = ChannelType("other", ECHO.settings, ECHO.create)
class Loose(ChannelBase):  # forgets type: Literal["loose"]
    pass
LOOSE = ChannelType("loose", Loose, ECHO.create)

from typing import Literal
from pydantic import field_validator
class Crashy(ChannelBase):  # a plugin with bugs in its validator and its factory
    type: Literal["crashy"]
    @field_validator("name")
    @classmethod
    def _check(cls, name):
        if name == "bad":
            raise KeyError("{oops}")
        return name
def make_crashy(settings, session):
    raise OSError("no such certificate file")
CRASHY = ChannelType("crashy", Crashy, make_crashy)
"""


@pytest.fixture
def broken_site(tmp_path) -> Path:
    """A folder that, on the path, holds a distribution registering broken channel types."""
    meta = tmp_path / "relay_test_broken-0.3.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: relay-test-broken\nVersion: 0.3\n")
    (meta / "entry_points.txt").write_text(BROKEN_PLUGINS)
    (tmp_path / "relay_test_broken_plugin.py").write_text("import relay_test_missing_dependency\n")
    (tmp_path / "relay_test_odd_plugins.py").write_text(ODD_PLUGINS)
    return tmp_path


def test_broken_plugins_are_config_errors_naming_the_plugin_and_the_exception(broken_site, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_site))
    types = discover()
    prefix = "channel type {!r} (package relay-test-broken 0.3) cannot be used: ".format
    assert {name: b.message() for name, b in types.broken.items()} == {
        "broken": prefix("broken") + "loading relay_test_broken_plugin:CHANNEL_TYPE raised "
                                     "ModuleNotFoundError: No module named 'relay_test_missing_dependency'",
        "notatype": prefix("notatype") + "relay_test_odd_plugins:NOT_A_TYPE is a dict, not a relay_adaptors.kernel.registry.ChannelType",
        "misnamed": prefix("misnamed") + "the entry point is named 'misnamed' but its ChannelType is named 'other'",
        "loose": prefix("loose") + "its settings model must declare type: Literal['loose']",
        "echo": "channel type 'echo' (package relay-echo 0.1.0) cannot be used: the type is also registered by relay-test-broken 0.3",
    }
    assert types.names() == sorted([*BUILT_IN, "crashy"])  # two packages registering echo: neither is picked silently
    text = TENANT + "  - name: b\n    type: broken\n    models: [x]\n"
    assert errors_of(text, channel_types=types) == ["c.yaml:6 channels[0].type: " + types.broken["broken"].message()]


async def test_a_plugin_that_crashes_validating_or_building_is_named(broken_site, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_site))
    types = discover()
    text = TENANT + "  - name: bad\n    type: crashy\n    models: [x]\n"
    assert errors_of(text, channel_types=types) == [
        "c.yaml:5 channels[0]: channel type 'crashy' failed while checking its settings: KeyError: '{oops}'"]
    config = parse_config(text.replace("name: bad", "name: good"), env={}, channel_types=types)
    with pytest.raises(ChannelTypeError) as e:
        types.create(config.channels[0], None)
    assert str(e.value) == ("channel 'good': channel type 'crashy' (relay-test-broken 0.3) could not build its adaptor: "
                            "OSError: no such certificate file")


def run_cli(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def test_check_config_lists_channel_types_with_package_and_version(tmp_path, broken_site):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(TENANT + "  - {name: m, type: mock, models: [x]}\n  - {name: o, type: openai, models: [y]}\n")
    r = run_cli("check-config", str(cfg), pythonpath=broken_site)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        "channel types in use: mock, openai (relay-gateway 0.1.0)",
        "channel types installed: anthropic, claude_cli, mock, openai (relay-gateway 0.1.0); crashy (relay-test-broken 0.3)",
    ]
    assert "warning: channel type 'broken' (package relay-test-broken 0.3) cannot be used: loading" in r.stderr
    cfg.write_text(TENANT + "  - {name: b, type: broken, models: [x]}\n")
    r = run_cli("check-config", str(cfg), pythonpath=broken_site)
    assert r.returncode == 1 and "No module named 'relay_test_missing_dependency'" in r.stderr
    assert f"{cfg}:5 channels[0].type: channel type 'broken' (package relay-test-broken 0.3) cannot be used" in r.stderr


async def test_relay_serve_announces_the_plugin_and_serves_through_it(tmp_path, fake_echo):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(echo_config(fake_echo.url))
    relay = RelayProcess(cfg, env={"ACME_KEY": ACME_KEY})
    try:
        startup = next(line for line in relay.lines if "listening on" in line)
        assert "channels=[echo-main(echo), mock-backup(mock)]" in startup
        assert "types=[echo (relay-echo 0.1.0); mock (relay-gateway 0.1.0)]" in startup
        client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=30)
        done = await client.chat.completions.create(model="echo-1", messages=HELLO)
        assert done.choices[0].message.content == "echo: hello plugin world"
    finally:
        relay.stop()


def test_relay_serve_warns_about_broken_plugins_it_does_not_use(tmp_path, broken_site):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(TENANT + "  - {name: m, type: mock, models: [x]}\nstore: {url: 'memory://'}\n")
    relay = RelayProcess(cfg, env={"PYTHONPATH": str(broken_site)})
    try:
        for _ in range(50):  # the warnings follow the startup line
            if "No module named 'relay_test_missing_dependency'" in relay.log:
                break
            time.sleep(0.1)
        assert "channel type 'broken' (package relay-test-broken 0.3) cannot be used" in relay.log
    finally:
        relay.stop()


async def test_a_reload_whose_plugin_cannot_build_keeps_the_old_config(broken_site, monkeypatch, tmp_path, aiohttp_server):
    import relay_config.loader as loader
    from relay.admin import reload_config
    from relay.app import create_app
    from relay_adaptors.kernel import registry

    monkeypatch.syspath_prepend(str(broken_site))
    types = discover()
    monkeypatch.setattr(loader, "installed", lambda: types)
    monkeypatch.setattr(registry, "installed", lambda: types)
    path = tmp_path / "relay.yaml"
    good = "store: {url: 'memory://'}\ntenants:\n  - name: acme\n    keys: [\"" + ACME_KEY + "\"]\nchannels:\n"
    path.write_text(good + "  - {name: m, type: mock, models: [demo]}\n")
    app = create_app(loader.load_config(path), path)
    server = await aiohttp_server(app, host="127.0.0.1")
    path.write_text(good + "  - {name: good, type: crashy, models: [demo]}\n")
    ok, errors = reload_config(app)
    assert not ok and "could not build its adaptor: OSError: no such certificate file" in errors[0]
    client = openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=ACME_KEY, max_retries=0)
    answer = await client.chat.completions.create(model="demo", messages=HELLO)  # the old config still serves
    assert answer.choices[0].message.content
