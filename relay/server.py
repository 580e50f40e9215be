"""Running the app as a process: bind, announce, reload on SIGHUP, drain on SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from relay_adaptors.kernel.registry import installed
from relay_config.schema import RelayConfig, split_host_port

from . import __version__
from .admin import reload_config
from .app import create_app
from .connections import ClientLimits, GuardedRunner
from .ops import OPS_SPLIT, ops_app
from .vkeys.wiring import KeyConflict
from .workers import supervised

log = logging.getLogger("relay")


async def start_ops_listener(app: web.Application, ops_listen: str, limits: ClientLimits, shared: bool) -> web.AppRunner:
    """/metrics, /admin/* and the probes on their own address. `shared`: with --workers N
    every worker binds it; any one answers (metrics are summed, reload reaches all)."""
    host, port = split_host_port(ops_listen)
    runner = GuardedRunner(ops_app(app), limits, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True, reuse_port=shared).start()
    return runner


def raise_open_files(connections: int) -> None:
    """Lifts the soft open-files limit toward the hard one, so the connection cap
    (server.max_connections) is what refuses clients, not EMFILE."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections * 2 + 256  # a client socket, an upstream socket, and the rest
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < connections + 256:  # not even one socket per allowed connection
        log.warning("open files are limited to %s: fewer than server.max_connections=%s streams can run", target, connections)


async def serve(config: RelayConfig, host: str, port: int, config_path: Path | None = None,
                ops_listen: str | None = None) -> None:
    raise_open_files(config.server.max_connections)
    app = create_app(config, config_path)
    app[OPS_SPLIT] = ops_listen is not None  # what is bound, whatever a later reload says
    # shutdown_timeout: how long in-flight requests and streams may run on after SIGTERM.
    # GuardedRunner: header/body read timeouts, keep-alive idle timeout, connection cap.
    limits = ClientLimits.of(config.server)
    runner = GuardedRunner(app, limits, handler_cancellation=True, access_log=None, shutdown_timeout=config.server.drain_seconds)
    try:
        await runner.setup()
    except KeyConflict as e:  # a key both in the YAML and the key store (relay.vkeys)
        log.error("cannot start: %s", e)
        raise SystemExit(1) from None
    # Only the workers of one supervisor share a port (SO_REUSEPORT, relay/workers.py; the
    # supervisor checked it was free). A lone instance binds it alone, so a second `relay serve`
    # on the same port fails instead of silently taking half of its connections.
    shared = supervised()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=shared, backlog=4096)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", host, port, e.strerror)
        await runner.cleanup()
        raise SystemExit(1) from None
    try:
        ops = await start_ops_listener(app, ops_listen, limits, shared) if ops_listen else None
    except OSError as e:  # e.g. the default 127.0.0.1:9091 taken by another program
        log.error("cannot listen on the operations address %s (server.ops_listen / --ops-listen): %s", ops_listen, e.strerror)
        await runner.cleanup()
        raise SystemExit(1) from None
    channels = ", ".join(f"{c.name}({c.type})" for c in config.channels)
    types = installed().describe(c.type for c in config.channels)  # with the package and version of each
    log.info(
        "relay %s listening on http://%s:%s channels=[%s] types=[%s] models=[%s] ops=%s",
        __version__, host, port, channels, types, ", ".join(config.public_models()),
        f"http://{ops_listen}" if ops_listen else "(on the public listener)",
    )
    for broken in installed().broken.values():  # unused by this config, or it would not have loaded
        log.warning("%s", broken.message())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_config(app))
    try:
        await stop.wait()
        log.info("relay draining: no new connections; in-flight requests get up to %ss", config.server.drain_seconds)
    finally:
        if ops is not None:
            await ops.cleanup()
        await runner.cleanup()
        log.info("relay stopped")
