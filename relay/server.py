"""Running the app as a process: bind, announce, and stop cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from config.schema import RelayConfig

from . import __version__
from .app import create_app

log = logging.getLogger("relay")


async def serve(config: RelayConfig, host: str, port: int) -> None:
    app = create_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
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
    try:
        await stop.wait()
        log.info("relay shutting down")
    finally:
        await runner.cleanup()
