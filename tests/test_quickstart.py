"""The README's quick start, command by command, against a real `make run`.

What differs from a person typing it: free ports instead of 8080 / 9091 / 8081 / 9092 (other
suites run on this machine at the same time), the store in a temporary folder instead of the
clone (RELAY_STORE_URL, which the example config reads), and curl failing on an HTTP error
status (a shim adds --fail-with-body), so a 4xx/5xx answer fails the test. `make test` is the
suite itself and is not run from here.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from .proc import ROOT, free_port

README = ROOT / "README.md"


def quick_start_commands() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                commands.append(command.strip())
    return commands


class MakeRun:
    """`make run ...` in the clone, as its own process group (make and the relay it starts)."""

    def __init__(self, command: str, env: dict[str, str]):
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, start_new_session=True)
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                if "listening on" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"{command!r} did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    shims = tmp_path / "bin"
    shims.mkdir()
    real_curl = subprocess.run(["bash", "-c", "command -v curl"], capture_output=True, text=True).stdout.strip()
    assert real_curl, "curl is needed to run the quick start"
    (shims / "curl").write_text(f'#!/bin/sh\nexec {real_curl} --fail-with-body "$@"\n')
    (shims / "curl").chmod(0o755)
    # make reads variables from the environment too: a PORT or CONFIG set there would change
    # what the README's plain `make run` does.
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "OPS_LISTEN", "CONFIG") and not k.startswith("RELAY_")}
    return {**env, "PATH": f"{shims}:{os.environ['PATH']}", "RELAY_STORE_URL": f"sqlite:///{tmp_path}/relay.db"}


def test_every_quick_start_command_succeeds(shell_env):
    commands = quick_start_commands()
    assert "make test" in " ".join(commands)
    servers = [c for c in commands if c.startswith("make run")]
    clients = [c for c in commands if not c.startswith("make ")]
    assert len(servers) == 2 and any("PORT=" in c for c in servers), servers
    assert any("/admin/" in c for c in clients) and any("relay usage" in c for c in clients)

    port, ops, port2, ops2 = free_port(), free_port(), free_port(), free_port()
    ports = {"8080": port, "9091": ops, "8081": port2, "9092": ops2}

    def on_free_ports(command: str) -> str:
        return re.sub(r"\b(8080|9091|8081|9092)\b", lambda m: str(ports[m.group(1)]), command)

    # Changing the port (and the ops listener): the second `make run` comes up where it was told.
    moved = next(c for c in servers if "PORT=" in c)
    relay = MakeRun(on_free_ports(moved), shell_env)
    try:
        assert f"listening on http://127.0.0.1:{port2}" in "".join(relay.lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port2}/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{ops2}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        relay.stop()

    # The plain `make run`, on the defaults the example config reads from the environment.
    plain = next(c for c in servers if "PORT=" not in c)
    env = {**shell_env, "RELAY_PORT": str(port), "RELAY_OPS_LISTEN": f"127.0.0.1:{ops}"}
    relay = MakeRun(plain, env)
    outputs = []
    try:
        for command in clients:
            r = subprocess.run(["bash", "-o", "pipefail", "-c", on_free_ports(command)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
            outputs.append((command, r.stdout))
    finally:
        relay.stop()
    said = [out for _, out in outputs]
    assert any('"choices"' in out for out in said)
    assert any('"name":"demo"' in out and '"state":"closed"' in out for out in said)
    assert any(out.startswith("relay_requests_total{") for out in said)
    assert any(out.strip() == "reloaded" for out in said)
    usage = next(out for c, out in outputs if "relay usage" in c)
    assert "demo" in usage and usage.splitlines()[-1].split()[:2] == ["TOTAL", "2"]  # the two chat calls above
