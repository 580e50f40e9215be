"""How Relay names a field inside a nested document, for errors that point at it, and how a
client-chosen value is shown back in a header, an error or a log line: bounded, token charset."""
from __future__ import annotations

import re
from collections.abc import Iterable

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_.-]")
MAX_SHOWN_LEN, MAX_SHOWN_COUNT = 64, 16


def format_loc(loc: Iterable[str | int]) -> str:
    """A path as OpenAI's `param` and the config errors write it: `messages[2].content`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def shown(value: str) -> str:
    """A client-chosen name as Relay may reflect it: at most 64 characters of [A-Za-z0-9_.-]."""
    return _NOT_TOKEN.sub("_", value[:MAX_SHOWN_LEN]) or "_"


def add_shown(names: list[str], value: str) -> None:
    """Adds `value`, as shown, to a bounded list of distinct names (at most 16)."""
    name = shown(value)
    if name not in names and len(names) < MAX_SHOWN_COUNT:
        names.append(name)
