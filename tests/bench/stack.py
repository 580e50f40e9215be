"""What the benchmark runs (shared by `make bench` and `python -m tests.bench.cpu`): the rows,
their bodies, nginx with the fixed upstream bodies, Relay and its config."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..proc import free_port
from . import bodies, chain

KEY = "sk-bench"
# A tenant with every kind of limit, set high enough never to refuse: what checking and
# settling them costs, on the store in use.
LIMITED_KEY = "sk-bench-limited"
ROWS = [
    # name, api path, model, stream, upstream path
    ("chat, openai passthrough, non-stream", "/v1/chat/completions", "oa-json", False, "/oa-json/v1/chat/completions"),
    ("chat, openai passthrough, stream", "/v1/chat/completions", "oa-sse", True, "/oa-sse/v1/chat/completions"),
    ("chat via anthropic, non-stream", "/v1/chat/completions", "an-json", False, "/an-json/v1/messages"),
    ("chat via anthropic, stream", "/v1/chat/completions", "an-sse", True, "/an-sse/v1/messages"),
    ("responses via anthropic, non-stream", "/v1/responses", "an-json", False, "/an-json/v1/messages"),
    ("responses via anthropic, stream", "/v1/responses", "an-sse", True, "/an-sse/v1/messages"),
    ("responses via openai native, non-stream", "/v1/responses", "na-json", False, "/na-json/v1/responses"),
    ("responses via openai native, stream", "/v1/responses", "na-sse", True, "/na-sse/v1/responses"),
    ("chat via openai responses-only (api: responses), stream", "/v1/chat/completions", "ro-sse", True, "/ro-sse/v1/responses"),
    ("messages, anthropic passthrough, non-stream", "/v1/messages", "an-json", False, "/an-json/v1/messages"),
    ("messages, anthropic passthrough, stream", "/v1/messages", "an-sse", True, "/an-sse/v1/messages"),
    ("messages via openai, non-stream", "/v1/messages", "oa-json", False, "/oa-json/v1/chat/completions"),
    ("messages via openai, stream", "/v1/messages", "oa-sse", True, "/oa-sse/v1/chat/completions"),
]


def body_for(path: str, model: str, stream: bool) -> dict:
    if path == "/v1/messages":
        return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "Say something."}], "stream": stream}
    if path == "/v1/responses":  # not stored: the cost of state is the stored-chain row's (chain.py)
        return {"model": model, "input": "Say something.", "stream": stream, "store": False}
    return {"model": model, "messages": [{"role": "user", "content": "Say something."}], "stream": stream}


def upstream_body(upstream: str, model: str, stream: bool) -> dict:
    if upstream.endswith("/messages"):
        return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "Say something."}], "stream": stream}
    return body_for("/v1/responses" if upstream.endswith("/responses") else "/v1/chat/completions", model, stream)


def start_nginx(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    root = tmp / "www"
    for prefix, (name, _ctype, make) in bodies.UPSTREAMS.items():
        f = root / prefix / "v1" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(make())
    locations = "\n".join(
        f"    location /{prefix}/ {{ root {root}; default_type {ctype}; error_page 405 =200 $uri; }}"
        for prefix, (_, ctype, _) in bodies.UPSTREAMS.items()
    )
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=8192;
{locations}
  }}
}}
""")
    proc = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", str(conf), "-g", "daemon off;"])
    wait_port(port)
    return proc, port


def wait_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def relay_config(tmp: Path, nginx: int, paced: int, store: str | None = None) -> Path:
    channels = []
    for prefix in bodies.UPSTREAMS:
        kind = "anthropic" if prefix.startswith("an-") else "openai"
        base = f"http://127.0.0.1:{nginx}/{prefix}" + ("" if kind == "anthropic" else "/v1")
        extra = "\n    api_key: sk-ant-bench" if kind == "anthropic" else ("\n    responses: native" if prefix.startswith("na-") else "")
        extra += "\n    api: responses" if prefix == "ro-sse" else ""
        channels.append(f"  - name: {prefix}\n    type: {kind}\n    base_url: {base}{extra}\n    models: [{prefix}]")
    channels.append(chain.CHANNEL)
    for name in ("paced", "slow"):
        channels.append(f"  - name: {name}\n    type: openai\n    base_url: http://127.0.0.1:{paced}/{name}/v1\n    models: [{name}]\n"
                        f"    timeout: {{first_byte: 60, idle: 60, total: 600}}")
    path = tmp / "relay.yaml"
    path.write_text(f"""\
server: {{log_level: warning, max_connections: 12000, ops_listen: "127.0.0.1:{free_port()}"}}
store: {{url: "{store or f'sqlite:///{tmp}/bench.db'}"}}
tenants:
  - name: bench
    keys: [{KEY}]
  - name: limited
    keys: [{LIMITED_KEY}]
    limits: {{rpm: 100000000, tpm: 1000000000000, max_concurrent: 100000, budget: {{tokens: 1000000000000000, period: month}}}}
channels:
""" + "\n".join(channels) + "\n")
    return path


def start_relay(config: Path, port: int, cpus: str, workers: int = 1, code: Path | None = None) -> subprocess.Popen:
    """`code`: a directory holding other relay / relay_adaptors / relay_config packages to run
    instead of the installed ones (an A/B comparison against another commit)."""
    log = open(config.parent / f"relay-{workers}.log", "w")
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    proc = subprocess.Popen(["taskset", "-c", cpus, sys.executable, "-m", "relay", "serve", "-c", str(config), "--port", str(port),
                             "--workers", str(workers)], cwd=config.parent, stderr=log, env=env)
    wait_port(port)
    time.sleep(0.5)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (its children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()

    def get(key: str) -> int:
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith(key)))

    return get("VmRSS:"), get("VmHWM:")
