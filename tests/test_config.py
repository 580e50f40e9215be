"""The YAML contract: env expansion, strict keys, and errors that name file, line and path."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relay_config.loader import ConfigError, parse_config

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
    assert any("duplicate channel name 'up'" in e for e in errors_of(dup, {"ACME_KEY": "k", "UP_KEY": "s"}))
    assert errors_of("tenants: [\n")[0].startswith("c.yaml:2: invalid YAML")


def test_list_of_models_means_same_name():
    cfg = parse_config(GOOD.replace("{public: upstream}", "[a, b]"), env={"ACME_KEY": "k", "UP_KEY": "s"})
    assert cfg.channels[0].models == {"a": "a", "b": "b"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def test_check_config_accepts_the_example():
    r = run_cli("check-config", "config.example.yaml")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout.splitlines()[0]


def test_check_config_rejects_a_broken_file_with_every_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("type: openai", "type: opneai").replace("name: acme", "name: acme\n    bogus: 1"))
    r = run_cli("check-config", str(bad), env={"PATH": "/usr/bin:/bin", "UP_KEY": "sk-secret-xyz"})
    assert r.returncode == 1
    assert f"{bad}:4 tenants[0].keys[0]: environment variable ACME_KEY is not set" in r.stderr
    assert f"{bad}:3 tenants[0].bogus: unknown key" in r.stderr
    assert f"{bad}:7 channels[0].type: 'opneai' is not an installed channel type (installed: anthropic, claude_cli, " in r.stderr
    assert "sk-secret-xyz" not in r.stderr + r.stdout
