"""One place for JSON encoding/decoding: orjson on the hot path."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


# orjson's own functions, not wrappers: they run once per frame of a stream.
dumps: Callable[[Any], bytes] = orjson.dumps
loads: Callable[[bytes | str], Any] = orjson.loads


def loads_event(data: bytes | str) -> Any:
    """A stream event's payload; ValueError (which stream readers turn into a 502) if it is not JSON.
    Bytes that are not UTF-8 are read as the SSE decoder reads them (invalid bytes replaced)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if isinstance(data, bytes):
            try:
                return orjson.loads(data.decode("utf-8", errors="replace"))
            except orjson.JSONDecodeError:
                pass
        raise ValueError("a stream event is not JSON") from None
