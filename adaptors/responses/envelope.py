"""The Response object around the output: ids, echoed request fields, status and usage."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..kernel.ids import new_id


class Envelope:
    """Everything of the Response except its output, status and usage, fixed at the start."""

    __slots__ = ("base", "clock")

    def __init__(self, model: str, echo: dict[str, Any], response_id: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.clock = clock  # injectable so golden tests can pin timestamps
        self.base = {
            "id": response_id or new_id("resp_"),
            "object": "response",
            "created_at": int(clock()),
            "model": model,
            "previous_response_id": None,
            "background": False,
            **echo,
        }

    def snapshot(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
    ) -> dict[str, Any]:
        resp = dict(self.base)
        resp["status"] = status
        resp["output"] = output
        resp["output_text"] = "".join(
            part["text"] for item in output if item["type"] == "message"
            for part in item["content"] if part["type"] == "output_text"
        )
        if usage is not None:  # the schema has no null usage: absent until known
            resp["usage"] = usage
        resp["error"] = error
        resp["incomplete_details"] = {"reason": incomplete_reason} if incomplete_reason else None
        if status == "completed":
            resp["completed_at"] = int(self.clock())
        return resp
