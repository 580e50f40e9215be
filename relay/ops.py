"""The operations surface: /metrics, /admin/* and the probes on a listener of their own
(`server.ops_listen`, loopback by default), so tenants never reach them on the public port.

The ops application shares the running gateway's state (runtime, store, metrics, breakers):
it is built once the gateway app has started and reads the same objects.
"""
from __future__ import annotations

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError

OPS_SURFACE = web.AppKey("ops_surface", bool)  # set on the ops application only
# Whether a separate ops listener serves /metrics and /admin/*: decided once, when the
# listeners are bound (config or --ops-listen), never by a reloaded config.
OPS_SPLIT = web.AppKey("ops_split", bool)


def require_ops_surface(request: web.Request) -> None:
    """On the public listener an ops endpoint does not exist, unless no ops listener was
    started (`server.ops_listen: null`: then the public listener serves them too)."""
    if request.app.get(OPS_SPLIT, True) and not request.app.get(OPS_SURFACE, False):
        raise RelayError(404, f"Unknown path: {request.method} {request.path}", code="not_found")


def ops_app(gateway: web.Application) -> web.Application:
    """The ops application for a started gateway app."""
    from .app import errors_middleware
    from .appkeys import RUNTIME
    from .vkeys.admin_api import add_routes as add_key_routes

    if RUNTIME not in gateway:
        raise RuntimeError("start the gateway application before building its ops application")
    app = web.Application(middlewares=[errors_middleware])
    for key in gateway:  # the same objects: a reload or a metric seen here is the gateway's own
        app[key] = gateway[key]
    app[OPS_SURFACE] = True
    add_ops_routes(app.router)
    add_key_routes(app.router)
    return app


def add_ops_routes(router: web.UrlDispatcher) -> None:
    """The probes, /metrics and /admin/*: on the ops listener, and on the public one too (where
    `require_ops_surface` hides the ops endpoints unless no ops listener runs)."""
    from . import admin, handlers

    router.add_get("/healthz", handlers.healthz)
    router.add_get("/readyz", handlers.readyz)
    router.add_get("/metrics", handlers.metrics)
    router.add_post("/admin/reload", admin.reload)
    router.add_get("/admin/channels", admin.channels)
    router.add_get("/admin/usage", admin.usage)
