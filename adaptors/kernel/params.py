"""How Relay names a field inside a nested document, for errors that point at it."""
from __future__ import annotations

from collections.abc import Iterable


def format_loc(loc: Iterable[str | int]) -> str:
    """A path as OpenAI's `param` and the config errors write it: `messages[2].content`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
