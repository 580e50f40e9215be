"""Relay's models in the shape of Anthropic's Models API (pure)."""
from __future__ import annotations

from typing import Any

EPOCH = "1970-01-01T00:00:00Z"  # Relay does not know release dates; the API allows the epoch then


def model_info(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": EPOCH, "capabilities": None,
            "max_input_tokens": None, "max_tokens": None}


def model_page(names: list[str], limit: int = 20, after_id: str | None = None, before_id: str | None = None) -> dict[str, Any]:
    """One page of the list, paginated by id as the API does (`after_id`, `before_id`, `limit`)."""
    if after_id in names:
        names = names[names.index(after_id) + 1:]
    if before_id in names:
        names = names[: names.index(before_id)]
        page = names[-limit:]  # the page just before `before_id`
    else:
        page = names[:limit]
    has_more = len(names) > limit
    data = [model_info(n) for n in page]
    return {"data": data, "has_more": has_more, "first_id": page[0] if page else None, "last_id": page[-1] if page else None}
