"""Usage aggregates as a table, JSON or CSV (the `relay usage` command and /admin/usage)."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from .store.base import AGGREGATE_FIELDS

COLUMNS = ("day", "tenant", "model", *AGGREGATE_FIELDS)


def with_total(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    total = {"day": "TOTAL", "tenant": "", "model": "", **{f: sum(r[f] for r in rows) for f in AGGREGATE_FIELDS}}
    return [*rows, total]


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"data": rows}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    table = [COLUMNS] + [tuple(str(r[c]) for c in COLUMNS) for r in with_total(rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
