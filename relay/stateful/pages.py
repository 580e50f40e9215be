"""Cursor pages over stored items (pure): `after` / `before` an item id, `limit`, `order`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay_adaptors.kernel.errors import bad_request

MAX_LIMIT = 100


def page(items: list[dict[str, Any]], query: Mapping[str, str], default_order: str = "desc") -> dict[str, Any]:
    """The list object of one page. An unknown cursor is a 400 naming it (OpenAI's answer),
    never an empty page that looks like the end."""
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise bad_request(f"Invalid value for 'order': {order[:20]!r} (expected 'asc' or 'desc').", param="order")
    raw_limit = query.get("limit", "20")
    # int() refuses "²" (a digit to isdigit) and more than 4300 digits
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise bad_request(f"Invalid value for 'limit': expected an integer from 1 to {MAX_LIMIT}.", param="limit")
    limit = int(raw_limit)
    ordered = items if order == "asc" else items[::-1]
    start, end = 0, len(ordered)
    if (after := query.get("after")) is not None:
        start = _index(ordered, after, "after") + 1
    if (before := query.get("before")) is not None:
        end = _index(ordered, before, "before")
    window = ordered[start:end]
    data = window[:limit] if before is None or after is not None else window[-limit:]
    more = len(window) > len(data)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "", "has_more": more}  # strings in the spec, even for an empty page


def _index(items: list[dict[str, Any]], item_id: str, param: str) -> int:
    for i, item in enumerate(items):
        if item.get("id") == item_id:
            return i
    shown = item_id if len(item_id) <= 64 else item_id[:64] + "..."
    raise bad_request(f"Invalid value for '{param}': no item with id '{shown}' in this list.", param=param)
