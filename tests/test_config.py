"""The YAML contract: env expansion, strict keys, and errors that name file, line and path."""
from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from relay_config.loader import ConfigError, parse_config

from .support import relay_cli

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
tenants:
  - name: acme
    keys: ["${ACME_KEY}"]
channels:
  - name: up
    type: openai
    base_url: ${UP_URL:-http://127.0.0.1:1234/v1}
    api_key: ${UP_KEY}
    models: {public: upstream}
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "c.yaml", env=env or {})
    return exc.value.lines()


def test_env_vars_and_defaults_expand():
    cfg = parse_config(GOOD, env={"ACME_KEY": "k1", "UP_KEY": "secret"})
    ch = cfg.channels[0]
    assert cfg.tenants[0].keys == ["k1"]
    assert ch.base_url == "http://127.0.0.1:1234/v1" and ch.api_key == "secret"
    assert ch.models == {"public": "upstream"}
    cfg = parse_config(GOOD, env={"ACME_KEY": "k1", "UP_KEY": "s", "UP_URL": "http://x/v1"})
    assert cfg.channels[0].base_url == "http://x/v1"


def test_missing_env_var_names_it_and_its_line():
    assert errors_of(GOOD, {"ACME_KEY": "k"}) == ["c.yaml:8 channels[0].api_key: environment variable UP_KEY is not set"]


def test_wrong_channel_type_is_named_with_line():
    text = GOOD.replace("type: openai", "type: opneai")
    [line] = errors_of(text, {"ACME_KEY": "k", "UP_KEY": "s"})
    assert line.startswith("c.yaml:6 channels[0].type: 'opneai' is not an installed channel type (installed: anthropic, claude_cli, ")
    assert line.endswith(", mock, openai)")  # sorted; plugins installed in this venv may sit between


def test_every_error_is_reported_at_once():
    text = textwrap.dedent("""\
        server:
          port: 99999
          colour: blue
        tenants:
          - name: a
        channels:
          - name: m
            type: mock
            models: []
            timeout: {idle: 0}
        """)
    assert errors_of(text) == [
        "c.yaml:2 server.port: Input should be less than or equal to 65535",
        "c.yaml:3 server.colour: unknown key",
        "c.yaml:5 tenants[0]: a tenant needs at least one of keys or key_sha256",
        "c.yaml:9 channels[0].models: a channel must serve at least one model",
        "c.yaml:10 channels[0].timeout.idle: Input should be greater than 0",
    ]


def test_secret_values_never_appear_in_errors():
    secret = "sk-live-SECRET-value"
    text = GOOD.replace("api_key: ${UP_KEY}", "api_key: [" + secret + "]")
    lines = errors_of(text, {"ACME_KEY": "k"})
    assert lines and all(secret not in line for line in lines)


def test_duplicate_names_and_yaml_syntax():
    dup = GOOD + "  - name: up\n    type: mock\n    models: [x]\n"
    assert errors_of(dup, {"ACME_KEY": "k", "UP_KEY": "s"}) == ["c.yaml:10 channels[1].name: duplicate channel name 'up' (first at channels[0])"]
    assert errors_of("tenants: [\n")[0].startswith("c.yaml:2: invalid YAML")


CROSS = """\
server:
  port: 80000
tenants:
  - name: acme
    keys: [k1]
  - name: globex
    keys: [k2, k1]
  - name: acme
    key_sha256: ["%s"]
aliases:
  fast: m1
  m2: m1
  nope: missing
channels:
  - name: a
    type: mock
    models: [m1, m2]
  - name: a
    type: mock
    models: {m3: x}
    colour: red
""" % hashlib.sha256(b"k2").hexdigest().upper()


def test_cross_entry_errors_name_the_entry_and_come_with_every_other_error():
    # Regression: these were one error at line 1 with no path, and only the first of them.
    assert errors_of(CROSS) == [
        "c.yaml:2 server.port: Input should be less than or equal to 65535",
        "c.yaml:7 tenants[1].keys[1]: tenants 'acme' and 'globex' share an API key (tenants[0])",
        "c.yaml:8 tenants[2].name: duplicate tenant name 'acme' (first at tenants[0])",
        "c.yaml:9 tenants[2].key_sha256[0]: tenants 'globex' and 'acme' share an API key (tenants[1])",
        "c.yaml:12 aliases.m2: alias 'm2' is also a model a channel serves",
        "c.yaml:13 aliases.nope: alias 'nope' points to 'missing', which no channel serves",
        "c.yaml:18 channels[1].name: duplicate channel name 'a' (first at channels[0])",
        "c.yaml:21 channels[1].colour: unknown key",
    ]


def test_cross_entry_rules_hold_for_configs_built_in_code_too():
    from relay_adaptors.kernel.registry import installed
    from relay_config.schema import CHANNEL_TYPES_CONTEXT, RelayConfig

    data = {"tenants": [{"name": "t", "keys": ["k"]}], "channels": [{"name": "c", "type": "mock", "models": ["m"]}] * 2}
    with pytest.raises(ValueError, match="duplicate channel name 'c'"):
        RelayConfig.model_validate(data, context={CHANNEL_TYPES_CONTEXT: installed()})


def test_ops_listen_must_be_host_and_port():
    base = "tenants: [{name: t, keys: [k]}]\nchannels: [{name: c, type: mock, models: [m]}]\n"
    assert parse_config(base, env={}).server.ops_listen == "127.0.0.1:9091"
    assert parse_config("server: {ops_listen: null}\n" + base, env={}).server.ops_listen is None
    assert errors_of("server: {ops_listen: '9091'}\n" + base) == [
        "c.yaml:1 server.ops_listen: '9091' is not host:port (e.g. 127.0.0.1:9091)"]


def test_list_of_models_means_same_name():
    cfg = parse_config(GOOD.replace("{public: upstream}", "[a, b]"), env={"ACME_KEY": "k", "UP_KEY": "s"})
    assert cfg.channels[0].models == {"a": "a", "b": "b"}


def test_check_config_accepts_the_example():
    r = relay_cli("check-config", "config.example.yaml")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout.splitlines()[0]


def test_check_config_rejects_a_broken_file_with_every_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("type: openai", "type: opneai").replace("name: acme", "name: acme\n    bogus: 1"))
    r = relay_cli("check-config", str(bad), env={"PATH": "/usr/bin:/bin", "UP_KEY": "sk-secret-xyz"})
    assert r.returncode == 1
    assert f"{bad}:4 tenants[0].keys[0]: environment variable ACME_KEY is not set" in r.stderr
    assert f"{bad}:3 tenants[0].bogus: unknown key" in r.stderr
    assert f"{bad}:7 channels[0].type: 'opneai' is not an installed channel type (installed: anthropic, claude_cli, " in r.stderr
    assert "sk-secret-xyz" not in r.stderr + r.stdout


def test_check_config_takes_dash_c_and_the_positional_form():
    for args in (["-c", "config.example.yaml"], ["--config", "config.example.yaml"], ["config.example.yaml"]):
        r = relay_cli("check-config", *args)
        assert r.returncode == 0 and "config.example.yaml: OK" in r.stdout, r.stderr
    r = relay_cli("check-config")
    assert r.returncode == 2 and "check-config takes one config file" in r.stderr


def test_check_config_reports_cross_entry_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text(CROSS)
    r = relay_cli("check-config", "-c", str(bad))
    assert r.returncode == 1
    assert f"{bad}:18 channels[1].name: duplicate channel name 'a'" in r.stderr
    assert f"{bad}:7 tenants[1].keys[1]: tenants 'acme' and 'globex' share an API key" in r.stderr
    assert r.stderr.rstrip().endswith(f"{bad}: 8 error(s)")


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "20261101", "7w", ""])
def test_usage_since_must_be_a_date_or_a_span(since):
    r = relay_cli("usage", "-c", "config.example.yaml", "--since", since)
    assert r.returncode == 2 and "argument --since" in r.stderr and "YYYY-MM-DD" in r.stderr and "7d, 24h" in r.stderr


def test_since_spans_count_back_from_now():
    from relay.usage_report import parse_since

    now = 1_764_590_400.0  # 2025-12-01T12:00:00Z
    assert parse_since("2026-11-01", now) == "2026-11-01"
    assert parse_since("7d", now) == "2025-11-24"
    assert parse_since("12h", now) == "2025-12-01" and parse_since("13h", now) == "2025-11-30"
    assert parse_since("0d", now) == "2025-12-01"


def test_ops_listener_needs_its_own_port(tmp_path):
    base = "tenants: [{name: t, keys: [k]}]\nchannels: [{name: c, type: mock, models: [m]}]\n"
    assert errors_of("server:\n  port: 9000\n  ops_listen: 127.0.0.1:9000\n" + base) == [
        "c.yaml:3 server.ops_listen: the operations listener needs a port of its own, not the public port 9000 "
        "(or ops_listen: null to serve both on one listener)"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(base)
    r = relay_cli("serve", "-c", str(cfg), "--port", "9555", "--ops-listen", "127.0.0.1:9555")
    assert r.returncode == 2 and "on the public port 9555" in r.stderr
