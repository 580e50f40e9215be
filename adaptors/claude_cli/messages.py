"""The CLI's stream-json output lines as typed messages (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..kernel import jsonfast
from .sessions import valid_session_id


@dataclass(frozen=True, slots=True)
class StreamEvent:
    event: dict[str, Any]  # a raw Anthropic stream event


@dataclass(frozen=True, slots=True)
class Result:
    is_error: bool
    api_error_status: int | None
    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    stop_reason: str | None = None
    session_id: str | None = None  # the CLI's session this run wrote (a UUID, else None)
    # Whether the CLI failed before it asked the model anything (e.g. --resume of a session
    # it has no file for): such a run cost nothing and may be started again.
    before_any_turn: bool = False


@dataclass(frozen=True, slots=True)
class Other:
    kind: str  # system/init, system/status, assistant, ...: nothing the answer needs


Message = StreamEvent | Result | Other


def parse_message(line: bytes) -> Message:
    try:
        obj = jsonfast.loads(line)
    except jsonfast.JSONDecodeError:
        raise ValueError("the CLI printed a line that is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ValueError("the CLI printed a JSON line without a type")
    kind = obj["type"]
    if kind == "stream_event" and isinstance(obj.get("event"), dict):
        return StreamEvent(obj["event"])
    if kind == "result":
        status = obj.get("api_error_status")
        usage = obj.get("usage")
        return Result(
            is_error=bool(obj.get("is_error")),
            api_error_status=int(status) if isinstance(status, (int, float)) else None,
            text=str(obj.get("result") or ""),
            usage=usage if isinstance(usage, dict) else {},
            cost_usd=obj.get("total_cost_usd") if isinstance(obj.get("total_cost_usd"), (int, float)) else None,
            stop_reason=obj.get("stop_reason"),
            session_id=_session_id(obj),
            before_any_turn=obj.get("subtype") == "error_during_execution" and obj.get("num_turns") == 0,
        )
    return Other(f"{kind}/{obj.get('subtype', '')}")


def _session_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("session_id")
    return value if valid_session_id(value) else None
