"""`relay keys create|list|show|update|revoke|rotate -c FILE`: the key store of the config's
`store.url`, worked on directly (no server needed), with the same audit trail as the admin API."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..store import StoreError
from .model import KeyInputError, KeyNotFound, VirtualKey
from .service import KeyService
from .store import open_key_store

COLUMNS = ("id", "tenant", "name", "hint", "created", "expires", "last_used", "disabled", "models", "limits")
LIMIT_FLAGS = ("rpm", "tpm", "max_concurrent")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else "-"


def render(keys: list[dict[str, Any]], fmt: str, secret: str | None = None) -> str:
    if fmt == "json":
        return json.dumps({"data": keys, **({"secret": secret} if secret else {})}, indent=2) + "\n"
    table = [COLUMNS] + [(
        k["id"], k["tenant"], k["name"] or "-", k["hint"], _when(k["created_at"]),
        _when(k["expires_at"]) + (" (expired)" if k["expired"] else ""), _when(k["last_used_at"]),
        "yes" if k["disabled"] else "no", ",".join(k["models"]) if k["models"] is not None else "*",
        json.dumps(k["limits"], separators=(",", ":")) if k["limits"] else "-") for k in keys]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if secret:
        lines.append(f"secret (shown once, store it now): {secret}")
    return "\n".join(lines) + "\n"


def _limits(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any] | None:
    """The key's limits with the flags given applied (0 removes a limit); None when no flag was given."""
    given = {f: getattr(args, f) for f in LIMIT_FLAGS if getattr(args, f) is not None}
    if not given and args.budget_tokens is None and args.budget_period is None:
        return None
    out = dict(current)
    for f, v in given.items():
        if v == 0:
            out.pop(f, None)
        else:
            out[f] = v
    if args.budget_tokens == 0:
        out.pop("budget", None)
    elif args.budget_tokens is not None or args.budget_period is not None:
        budget = dict(out.get("budget") or {})
        if args.budget_tokens is not None:
            budget["tokens"] = args.budget_tokens
        if args.budget_period is not None:
            budget["period"] = args.budget_period
        out["budget"] = budget
    return out


def _body(args: argparse.Namespace, key: VirtualKey | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.models is not None:
        body["models"] = None if args.models == "*" else [m.strip() for m in args.models.split(",") if m.strip()]
    if args.expires_in is not None:
        body["expires_at"] = time.time() + args.expires_in
    if args.metadata is not None:
        try:
            body["metadata"] = json.loads(args.metadata)
        except ValueError:
            raise KeyInputError("--metadata must be a JSON object.", "metadata") from None
    limits = _limits(args, key.limits if key is not None else {})
    if limits is not None:
        body["limits"] = limits
    return body


async def _run(args: argparse.Namespace, tenants: set[str], url: str) -> tuple[list[VirtualKey], str | None]:
    store = open_key_store(url)
    await store.start()
    svc = KeyService(store, tenants, f"cli:{getpass.getuser()}", time.time)
    try:
        match args.keys_command:
            case "create":
                key, secret = await svc.create({"tenant": args.tenant, **_body(args, None)})
                return [key], secret
            case "list":
                return await store.list_keys(args.tenant), None
            case "show":
                return [await svc.get(args.id)], None
            case "update":
                body = _body(args, await svc.get(args.id))
                if args.disable or args.enable:
                    body["disabled"] = bool(args.disable)
                if args.no_expiry:
                    body["expires_at"] = None
                return [await svc.update(args.id, body)], None
            case "revoke":
                return [await svc.revoke(args.id)], None
            case "rotate":
                key, secret = await svc.rotate(args.id, args.grace)
                return [key], secret
        raise AssertionError(args.keys_command)
    finally:
        await store.close()


def cmd_keys(args: argparse.Namespace, load: Callable[[str], Any]) -> int:
    config = load(args.config)
    if config is None:
        return 1
    if config.store.url.startswith("memory://"):
        print("store.url is memory://: there are no keys outside the running process", file=sys.stderr)
        return 1
    try:
        keys, secret = asyncio.run(_run(args, {t.name for t in config.tenants}, config.store.url))
    except KeyInputError as e:
        print(f"error: {e}" + (f" (param: {e.param})" if e.param else ""), file=sys.stderr)
        return 2
    except (KeyNotFound, StoreError) as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 1
    now = time.time()
    if args.keys_command == "revoke":
        print(f"revoked {keys[0].id}" if args.format == "table" else json.dumps({"id": keys[0].id, "deleted": True}))
        return 0
    print(render([k.public(now) for k in keys], args.format, secret), end="")
    return 0


def add_parser(sub: Any, load: Callable[[str], Any]) -> None:
    k = sub.add_parser("keys", help="issue, list, change, rotate and revoke virtual keys in the store")
    ksub = k.add_subparsers(dest="keys_command", required=True)

    def command(name: str, help: str, with_id: bool = True, policy: bool = False) -> argparse.ArgumentParser:
        p = ksub.add_parser(name, help=help)
        p.add_argument("-c", "--config", required=True, help="the YAML config file (its store.url and tenants are read)")
        if with_id:
            p.add_argument("id", help="the key id (key_...)")
        p.add_argument("--format", choices=("table", "json"), default="table")
        if policy:
            p.add_argument("--name")
            p.add_argument("--models", help="comma-separated model names or globs the key may use ('*': the tenant's)")
            for f in LIMIT_FLAGS:
                p.add_argument("--" + f.replace("_", "-"), dest=f, type=int, help="a limit of the key's own (0 removes it)")
            p.add_argument("--budget-tokens", type=int, help="a token budget of the key's own (0 removes it)")
            p.add_argument("--budget-period", choices=("day", "month"))
            p.add_argument("--expires-in", type=float, metavar="SECONDS", help="the key stops working this many seconds from now")
            p.add_argument("--metadata", help="a JSON object kept with the key")
        p.set_defaults(func=lambda args: cmd_keys(args, load))
        parser: argparse.ArgumentParser = p
        return parser

    command("create", "issue a key for a tenant (the secret is printed once)", with_id=False, policy=True).add_argument(
        "--tenant", required=True, help="a tenant of the config")
    command("list", "list keys (never secrets)", with_id=False).add_argument("--tenant", help="only this tenant's")
    command("show", "one key")
    u = command("update", "change a key's name, models, limits, expiry or state", policy=True)
    u.add_argument("--disable", action="store_true")
    u.add_argument("--enable", action="store_true")
    u.add_argument("--no-expiry", action="store_true")
    command("revoke", "delete a key: it stops working everywhere within a second")
    command("rotate", "a new secret; the old one keeps working for --grace seconds").add_argument(
        "--grace", type=float, default=0.0, help="seconds the old secret keeps working (default 0)")


def render_usage(url: str, tenant: str | None, since: str | None, fmt: str) -> int:
    """`relay usage --by key`: per day, tenant, key and model, from the key store's aggregates."""
    from ..usage_report import print_report
    from .store import KEY_USAGE_COLUMNS

    return print_report(lambda: open_key_store(url), lambda store: store.usage(tenant, None, since), fmt, KEY_USAGE_COLUMNS)
