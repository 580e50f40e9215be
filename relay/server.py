"""Running the app as a process: bind, announce, reload on SIGHUP, drain on SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from relay_config.schema import RelayConfig

from . import __version__
from .admin import reload_config
from .app import create_app
from .connections import ClientLimits, GuardedRunner

log = logging.getLogger("relay")


async def serve(config: RelayConfig, host: str, port: int, config_path: Path | None = None) -> None:
    app = create_app(config, config_path)
    # shutdown_timeout: how long in-flight requests and streams may run on after SIGTERM.
    # GuardedRunner: header/body read timeouts, keep-alive idle timeout, connection cap.
    runner = GuardedRunner(app, ClientLimits.of(config.server), handler_cancellation=True, access_log=None,
                           shutdown_timeout=config.server.drain_seconds)
    await runner.setup()
    # reuse_port: several worker processes may listen on the same port (relay/workers.py).
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=True, backlog=4096)
    await site.start()
    channels = ", ".join(f"{c.name}({c.type})" for c in config.channels)
    log.info(
        "relay %s listening on http://%s:%s channels=[%s] models=[%s]",
        __version__, host, port, channels, ", ".join(config.public_models()),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_config(app))
    try:
        await stop.wait()
        log.info("relay draining: no new connections; in-flight requests get up to %ss", config.server.drain_seconds)
    finally:
        await runner.cleanup()
        log.info("relay stopped")
