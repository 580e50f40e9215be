"""Real redis-servers on free loopback ports, for the tests that need one: a single server, or
a three-node Redis Cluster (each node a `redis-server --cluster-enabled yes`)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.cluster import key_slot

from .proc import free_port


def _exe() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed; `make test` installs it (scripts/system-deps.sh)")
    return exe


def _spawn(port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [_exe(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.terminate()
    proc.wait(timeout=10)
    raise RuntimeError("redis-server did not start")


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = _spawn(self.port)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def keys(self, pattern: str) -> list[str]:
        with self.client() as c:
            return sorted(c.keys(pattern))

    def flush(self) -> None:
        with self.client() as c:
            c.flushdb()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class RedisClusterServers:
    """Three primaries sharing the 16,384 slots (no replicas), ready when every node answers
    `cluster_state:ok` and knows all three. `url` names one node as the seed, as a user would."""

    NODES = 3

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="relay-cluster-")
        self.ports = [free_port() for _ in range(self.NODES)]
        self.bus_ports = [free_port() for _ in range(self.NODES)]  # not port + 10000: it may be taken
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, port in enumerate(self.ports):
                self.procs.append(_spawn(
                    port, "--cluster-enabled", "yes", "--cluster-port", str(self.bus_ports[i]),
                    "--cluster-config-file", str(Path(self._dir.name) / f"nodes-{i}.conf"), "--dir", self._dir.name,
                ))
            self._form()
        except BaseException:
            self.stop()
            raise
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)

    def _slots(self, i: int) -> tuple[int, int]:
        per = 16384 // self.NODES
        return i * per, 16383 if i == self.NODES - 1 else (i + 1) * per - 1

    def _form(self) -> None:
        for i, port in enumerate(self.ports):
            with self._node(port) as n:
                n.execute_command("CLUSTER", "ADDSLOTSRANGE", *self._slots(i))
                n.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        with self._node(self.ports[0]) as first:
            for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)
        deadline = time.monotonic() + 20
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the redis cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def _ready(self) -> bool:
        for port in self.ports:
            with self._node(port) as n:
                if "cluster_state:ok" not in n.execute_command("CLUSTER", "INFO"):
                    return False
                if len(n.execute_command("CLUSTER", "SLOTS")) != self.NODES:
                    return False
        return True

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True)

    def node_of(self, key: str) -> int:
        """The port of the node that holds `key` (by the slots `_form` gave each node)."""
        slot = key_slot(key.encode())
        return next(port for i, port in enumerate(self.ports) if self._slots(i)[0] <= slot <= self._slots(i)[1])

    def keys(self, pattern: str) -> list[str]:
        """Every node's keys (KEYS on a cluster client asks one node)."""
        found: list[str] = []
        for port in self.ports:
            with self._node(port) as n:
                found += n.keys(pattern)
        return sorted(found)

    def flush(self) -> None:
        for port in self.ports:
            with self._node(port) as n:
                n.flushall()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)
        self._dir.cleanup()
