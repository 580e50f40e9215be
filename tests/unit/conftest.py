"""Everything under tests/unit is the unit layer: pure code, injected clocks and RNGs, no
sockets, no processes. Run it alone with `python -m pytest tests/unit` or `-m unit`."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.unit)
