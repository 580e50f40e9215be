"""Usage aggregates as a table, JSON or CSV (the `relay usage` command and /admin/usage)."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from .store.base import AGGREGATE_FIELDS, StoreError

COLUMNS = ("day", "tenant", "model", *AGGREGATE_FIELDS)
SPAN = re.compile(r"^(\d+)([dh])$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_since(text: str, now: float) -> str:
    """`--since` / `?since=` as the first UTC day to include: a date (YYYY-MM-DD) or a span
    back from `now` (`7d`, `24h`). The ledger aggregates per day, so a span starts at the
    beginning of the day it reaches into. ValueError with the reason otherwise."""
    text = text.strip()
    m = SPAN.match(text)
    if m:
        seconds = int(m.group(1)) * (86400 if m.group(2) == "d" else 3600)
        return time.strftime("%Y-%m-%d", time.gmtime(now - seconds))
    if DAY.match(text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass  # e.g. month 13: the same message as any other bad value
    raise ValueError(f"{text!r} is neither a date (YYYY-MM-DD) nor a span back from now (e.g. 7d, 24h)")


NUMERIC = frozenset({*AGGREGATE_FIELDS, "stored_bytes"})  # right-aligned and totalled


def with_total(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    label, *_ = columns
    sums = {c: sum(r[c] for r in rows) for c in columns if c in NUMERIC}
    return [*rows, {**dict.fromkeys(columns, ""), label: "TOTAL", **sums}]


def render(rows: list[dict[str, Any]], fmt: str, columns: tuple[str, ...] | None = None) -> str:
    """`columns`: the row keys in order (default: the ledger's aggregate rows)."""
    columns = columns or COLUMNS
    if fmt == "json":
        return json.dumps({"data": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    table = [columns] + [tuple(str(r[c]) for c in columns) for r in with_total(rows, columns)]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) if columns[i] in NUMERIC else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def print_report(open_store: Callable[[], Any], query: Callable[[Any], Awaitable[list[dict[str, Any]]]], fmt: str,
                 columns: tuple[str, ...] | None = None) -> int:
    """`relay usage`: opens the store, asks `query` of it, prints the rows; the exit status
    (1 with the store's message when it cannot be read)."""

    async def fetch() -> list[dict[str, Any]]:
        store = open_store()
        await store.start()
        try:
            return await query(store)
        finally:
            await store.close()

    try:
        rows = asyncio.run(fetch())
    except StoreError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(render(rows, fmt, columns), end="")
    return 0
