"""Operator endpoints under /admin, guarded by `server.admin_key`, and config reload."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError, bad_request
from relay_adaptors.kernel.registry import ChannelTypeError
from relay_config.loader import ConfigError, load_config
from relay_config.schema import RelayConfig

from .appkeys import BREAKERS, CONFIG_PATH, METRICS, RUNTIME, SESSION, STORE
from .auth import is_admin
from .httpio import json_response
from .ops import require_ops_surface
from .runtime import build_runtime
from .store import StoreError
from .usage_report import parse_since
from .workers import SUPERVISOR_ENV, notify_supervisor_reload

log = logging.getLogger("relay")


def describe_change(old: RelayConfig, new: RelayConfig) -> str:
    def diff(kind: str, before: set[str], after: set[str]) -> str:
        added, removed = sorted(after - before), sorted(before - after)
        parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed]
        return f"{kind}[{' '.join(parts)}]" if parts else ""

    changes = [
        diff("channels", {c.name for c in old.channels}, {c.name for c in new.channels}),
        diff("tenants", {t.name for t in old.tenants}, {t.name for t in new.tenants}),
        diff("models", set(old.public_models()), set(new.public_models())),
    ]
    if (old.server.host, old.server.port, old.server.ops_listen) != (new.server.host, new.server.port, new.server.ops_listen):
        changes.append("server address changes need a restart")
    if old.store != new.store:
        changes.append("store changes need a restart")
    return " ".join(c for c in changes if c) or "no routing changes"


def reload_config(app: web.Application) -> tuple[bool, list[str]]:
    """Re-reads the config file; swaps it in whole if valid, else keeps the old one.
    In-flight requests finish on the runtime they started with."""
    path: Path | None = app.get(CONFIG_PATH)
    if path is None:
        return False, ["this server was not started from a config file"]
    try:
        config = load_config(path)
    except ConfigError as e:
        app[METRICS].reloads.labels("failure").inc()
        log.error("config reload rejected; the previous config stays in force:\n%s", "\n".join(e.lines()))
        return False, e.lines()
    holder = app[RUNTIME]
    old = holder.current.config
    if errors := _virtual_key_conflicts(app, config):
        app[METRICS].reloads.labels("failure").inc()
        log.error("config reload rejected; the previous config stays in force:\n%s", "\n".join(errors))
        return False, errors
    try:
        holder.current = build_runtime(config, app[SESSION], holder.current)
    except ChannelTypeError as e:  # a plugin's factory refused valid settings
        app[METRICS].reloads.labels("failure").inc()
        log.error("config reload rejected; the previous config stays in force: %s", e)
        return False, [str(e)]
    app[BREAKERS].cfg = config.router.cooldown
    app[METRICS].reloads.labels("success").inc()
    log.info("config reloaded from %s: %s", path, describe_change(old, config))
    return True, []


def _virtual_key_conflicts(app: web.Application, config: RelayConfig) -> list[str]:
    """A YAML key that is also a virtual key in the store rejects the reload (relay.vkeys)."""
    from .vkeys.appkeys import KEYSTORE
    from .vkeys.wiring import conflicts

    try:
        return conflicts(app[KEYSTORE], config)
    except StoreError as e:
        log.warning("could not check virtual keys against the YAML keys: %s", e)
        return []


def _guard(request: web.Request) -> None:
    server = request.app[RUNTIME].current.config.server
    require_ops_surface(request)
    if not server.admin_key:
        raise RelayError(404, "The admin API is disabled: set server.admin_key in the config "
                         "(e.g. admin_key: ${RELAY_ADMIN_KEY}) and reload or restart to enable it.", code="admin_api_disabled")
    if not is_admin(request, server.admin_key):
        raise RelayError(401, "Admin endpoints need the server's admin_key as a Bearer token.", code="invalid_admin_key")


async def reload(request: web.Request) -> web.Response:
    _guard(request)
    if SUPERVISOR_ENV in os.environ:
        # One worker got the request; check the file here, then have the supervisor signal all.
        try:
            load_config(request.app[CONFIG_PATH])
        except ConfigError as e:
            return json_response({"status": "rejected", "errors": e.lines()}, status=400)
        notify_supervisor_reload()
        return json_response({"status": "reloaded"})
    ok, errors = reload_config(request.app)
    if not ok:
        return json_response({"status": "rejected", "errors": errors}, status=400)
    return json_response({"status": "reloaded"})


async def channels(request: web.Request) -> web.Response:
    _guard(request)
    rt = request.app[RUNTIME].current
    state = request.app[BREAKERS].snapshot()
    default = {"state": "closed", "consecutive_failures": 0, "retry_after": 0, "reason": ""}
    return json_response({"channels": [
        {"name": c.name, "type": c.type, "priority": c.priority, "weight": c.weight, **state.get(c.name, default)}
        for c in rt.config.channels
    ]})


async def usage(request: web.Request) -> web.Response:
    _guard(request)
    tenant, since = request.query.get("tenant"), request.query.get("since")
    if since is not None:
        try:
            since = parse_since(since, time.time())
        except ValueError as e:
            raise bad_request(str(e), param="since") from None
    key = request.query.get("key")
    try:
        if key is not None or request.query.get("by") == "key":  # per virtual key (relay.vkeys)
            from .vkeys.appkeys import KEYSTORE

            return json_response({"data": await request.app[KEYSTORE].usage(tenant, key or None, since)})
        rows = await request.app[STORE].usage(tenant, since)
    except StoreError as e:
        raise RelayError(503, f"The usage store is unavailable: {e}", type="api_error", code="store_unavailable") from None
    return json_response({"data": rows})
