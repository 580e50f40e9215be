"""Byte streams cut at arbitrary points, for tests that a reader gives the same answer in
any chunking."""
from __future__ import annotations


def cuts(data: bytes, at: list[int]) -> list[bytes]:
    """`data` cut at the offsets in `at` (clamped to its length, duplicates ignored)."""
    points = sorted({min(a, len(data)) for a in at})
    return [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]
