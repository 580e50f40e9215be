"""`relay serve | check-config | reload | usage | health`, each reading `-c FILE`."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from relay_config.loader import ConfigError, load_config
from relay_config.schema import RelayConfig, split_host_port

from . import __version__

log = logging.getLogger("relay")


def summary(config: RelayConfig) -> str:
    kinds = Counter(ch.type for ch in config.channels)
    per_type = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    return (
        f"{len(config.tenants)} tenant(s), {len(config.channels)} channel(s) ({per_type}), "
        f"{len(config.public_models())} public model(s)"
    )


def _load(path: str) -> RelayConfig | None:
    """The config, or None after printing every error (for the commands that need one)."""
    try:
        return load_config(path)
    except ConfigError as e:
        print("\n".join(e.lines()), file=sys.stderr)
        return None


def local_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a listener bound to host:port."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def ops_url(config: RelayConfig) -> str:
    """The listener that serves /admin/* and /metrics for this config."""
    if config.server.ops_listen is None:
        return local_url(config.server.host, config.server.port)
    return local_url(*split_host_port(config.server.ops_listen))


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config
    try:
        config = load_config(path)
    except ConfigError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        print(f"{path}: {len(e.issues)} error(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK, {summary(config)}")
    print_channel_types(config)
    return 0


def print_channel_types(config: RelayConfig) -> None:
    """Which plugin (package and version) serves each type, and what else is installed."""
    from relay_adaptors.kernel.registry import installed

    types = installed()
    print(f"channel types in use: {types.describe(ch.type for ch in config.channels)}")
    print(f"channel types installed: {types.describe()}")
    for broken in types.broken.values():
        print(f"warning: {broken.message()}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from .server import serve

    config = _load(args.config)
    if config is None:
        return 1
    from .logs import setup

    setup(config.server.log_level)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers or config.server.workers
    ops_listen = args.ops_listen or config.server.ops_listen
    if ops_listen and port and split_host_port(ops_listen)[1] == port:
        # Both sockets use SO_REUSEPORT: they would share the port silently, not fail.
        print(f"the operations listener {ops_listen} is on the public port {port}: give it a port of its own, "
              "or set server.ops_listen: null to serve both on one listener", file=sys.stderr)
        return 2
    if workers > 1:
        from .workers import supervise

        if config.store.url.startswith("memory://"):
            log.warning("store.url is memory://: each of the %d workers enforces its own limits", workers)
        return supervise(Path(args.config).resolve(), host, port, workers, config.server.drain_seconds, args.ops_listen)
    run = asyncio.run
    try:
        import uvloop  # measurably faster event loop where available

        run = uvloop.run
    except ImportError:
        pass
    run(serve(config, host, port, Path(args.config), ops_listen))
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Asks a running server (the one this config file describes) to re-read its config."""
    import json
    import urllib.error
    import urllib.request

    config = _load(args.config)
    if config is None:
        return 1
    if not config.server.admin_key:
        print("reload needs server.admin_key in the config (or send SIGHUP to the process)", file=sys.stderr)
        return 1
    url = args.url or ops_url(config)
    req = urllib.request.Request(url.rstrip("/") + "/admin/reload", method="POST",
                                 headers={"Authorization": f"Bearer {config.server.admin_key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            print(json.loads(resp.read())["status"])
            return 0
    except urllib.error.HTTPError as e:
        body = json.loads(e.read() or b"{}")
        print("\n".join(body.get("errors") or [body.get("error", {}).get("message", str(e))]), file=sys.stderr)
    except OSError as e:
        print(f"cannot reach {url}: {e}", file=sys.stderr)
    return 1


def cmd_usage(args: argparse.Namespace) -> int:
    """Per tenant, model and day totals from the configured store's ledger."""
    from .store import open_store
    from .usage_report import print_report

    config = _load(args.config)
    if config is None:
        return 1
    if config.store.url.startswith("memory://"):
        print("store.url is memory://: there is no ledger outside the running process", file=sys.stderr)
        return 1

    if args.by == "key":  # per virtual key, from the key store's own aggregates (relay.vkeys)
        from .vkeys.cli import render_usage

        return render_usage(config.store.url, args.tenant, args.since, args.format)

    if args.by == "stored":  # stored responses and conversations, now
        tenants = [t.name for t in config.tenants if args.tenant in (None, t.name)]

        async def stored(store: Any) -> list[dict[str, Any]]:
            return [{"tenant": t, "stored_bytes": n} for t, n in (await store.doc_bytes(tenants)).items()]

        return print_report(lambda: open_store(config.store.url), stored, args.format, ("tenant", "stored_bytes"))
    return print_report(lambda: open_store(config.store.url), lambda store: store.usage(args.tenant, args.since), args.format)


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server this config describes answers /healthz (the image's HEALTHCHECK:
    it reads the same file as `serve`, so the probe follows the configured port)."""
    import urllib.request

    config = _load(args.config)
    if config is None:
        return 1
    url = args.url or local_url(config.server.host, config.server.port)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=args.timeout) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
        return 1


def since_arg(text: str) -> str:
    from .usage_report import parse_since

    try:
        return parse_since(text, time.time())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="relay", description="Relay, a multi-tenant LLM API gateway")
    p.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("-c", "--config", required=True, help="YAML config file")
    s.add_argument("--host", help="listen address (default: server.host)")
    s.add_argument("--port", type=int, help="listen port (default: server.port)")
    s.add_argument("--workers", type=int, help="processes sharing the port (default: server.workers)")
    s.add_argument("--ops-listen", metavar="HOST:PORT", type=_host_port,
                   help="the operations listener for /metrics and /admin (default: server.ops_listen)")
    s.set_defaults(func=cmd_serve)
    r = sub.add_parser("reload", help="make a running server re-read its config file")
    r.add_argument("-c", "--config", required=True, help="the YAML config file the server runs")
    r.add_argument("--url", help="the server's operations URL (default: from server.ops_listen)")
    r.set_defaults(func=cmd_reload)
    u = sub.add_parser("usage", help="print usage totals per tenant, model and day")
    u.add_argument("-c", "--config", required=True, help="the YAML config file (its store.url is read)")
    u.add_argument("--tenant", help="only this tenant")
    u.add_argument("--since", type=since_arg, help="only days from this one on: YYYY-MM-DD, or a span back from now (7d, 24h)")
    u.add_argument("--format", choices=("table", "json", "csv"), default="table")
    u.add_argument("--by", choices=("model", "key", "stored"), default="model",
                   help="rows per tenant and model (default), per virtual key, or the bytes each tenant has stored "
                        "(responses and conversations)")
    u.set_defaults(func=cmd_usage)
    from .vkeys.cli import add_parser as add_keys_parser

    add_keys_parser(sub, _load)
    c = sub.add_parser("check-config", help="validate a config file and summarise it")
    c.add_argument("-c", "--config", help="YAML config file")
    c.add_argument("file", nargs="?", help="the same, as a positional argument")
    c.set_defaults(func=cmd_check_config)
    h = sub.add_parser("health", help="exit 0 when the server of this config answers /healthz")
    h.add_argument("-c", "--config", required=True, help="the YAML config file the server runs")
    h.add_argument("--url", help="the server's base URL (default: from server.host/port)")
    h.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    h.set_defaults(func=cmd_health)
    return p


def _host_port(text: str) -> str:
    try:
        split_host_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        if (args.config is None) == (args.file is None):
            parser.error("check-config takes one config file: relay check-config -c FILE")
        args.config = args.config or args.file
    return int(args.func(args))
