"""`relay serve --workers N`: N processes on one port (SO_REUSEPORT), one supervisor.

The supervisor starts the workers, forwards SIGTERM/SIGINT (drain) and SIGHUP (reload) to
every one of them, restarts a worker that dies, and exits 0 once all have stopped after a
stop signal. Metrics are summed over workers through prometheus-client's multiprocess mode.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("relay")
SUPERVISOR_ENV = "RELAY_SUPERVISOR_PID"


def supervised() -> bool:
    """Whether this process is a worker of `relay serve --workers N`."""
    return bool(os.environ.get(SUPERVISOR_ENV))


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be ours alone (another program listens there), or None. The
    workers share the port with SO_REUSEPORT, which would let them join anyone's: so the
    supervisor binds it once without, first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def supervise(config_path: Path, host: str, port: int, workers: int, drain_seconds: float, ops_listen: str | None = None) -> int:
    from relay_config.schema import split_host_port

    for addr, number in ((host, port), *([split_host_port(ops_listen)] if ops_listen else [])):
        if (why := port_taken(addr, number)) is not None:
            log.error("cannot listen on %s:%s: %s", addr, number, why)
            return 1
    metrics_dir = tempfile.mkdtemp(prefix="relay-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, SUPERVISOR_ENV: str(os.getpid())}
    argv = [sys.executable, "-m", "relay", "serve", "-c", str(config_path), "--host", host, "--port", str(port), "--workers", "1"]
    if ops_listen:  # every worker binds the ops port too (SO_REUSEPORT); any one answers for all
        argv += ["--ops-listen", ops_listen]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env)

    procs = [start() for _ in range(workers)]
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    log.info("relay supervisor %d: %d workers on http://%s:%s", os.getpid(), workers, host, port)
    try:
        while True:
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.error("worker %d exited with %s; starting a new one", p.pid, p.returncode)
                    _mark_dead(p.pid)
                    procs[i] = start()
            if stopping:
                deadline = time.monotonic() + drain_seconds + 10
                for p in procs:
                    try:
                        p.wait(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                return 0
            time.sleep(0.2)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _mark_dead(pid: int) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    except Exception:  # metrics of a dead worker are a nicety, never a reason to stop
        pass


def notify_supervisor_reload() -> bool:
    """In a worker: asks the supervisor to reload every worker. False when not supervised."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if not pid:
        return False
    os.kill(int(pid), signal.SIGHUP)
    return True
