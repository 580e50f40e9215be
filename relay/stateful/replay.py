"""A stored Response as an event stream (pure): what `GET /v1/responses/{id}?stream=true`
sends for a response that is no longer running. Items come whole (added, then done), with no
text deltas: the stream carries what was stored, and what was stored is the final items."""
from __future__ import annotations

from typing import Any

TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed",
            "cancelled": "response.failed"}


def replay_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    start = {**response, "status": "in_progress", "output": [], "output_text": ""}
    for key in ("usage", "completed_at"):
        start.pop(key, None)
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start},
                                    {"type": "response.in_progress", "response": start}]
    for index, item in enumerate(response.get("output") or ()):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    status = response.get("status")
    if status in TERMINAL:
        events.append({"type": TERMINAL[status], "response": response})
    for seq, ev in enumerate(events):
        ev["sequence_number"] = seq
    return events
