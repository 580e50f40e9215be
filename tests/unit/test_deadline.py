"""A channel's timeouts as per-wait limits, on an injected clock."""
from __future__ import annotations

from relay_adaptors.kernel.deadline import Deadline
from relay_config.schema import Timeouts

from ..support import Clock


def deadline(**t: float) -> tuple[Deadline, Clock]:
    clock = Clock()
    return Deadline(Timeouts(**t), clock=clock), clock


def test_the_first_wait_is_for_the_first_byte_then_each_gap_is_idle():
    d, clock = deadline(first_byte=5, idle=2, total=100)
    assert d.next_wait() == (5, "first_byte")
    clock.advance(4)
    assert d.next_wait() == (5, "first_byte")  # a fresh wait each time, not what is left of the last
    d.got_first = True
    assert d.next_wait() == (2, "idle")


def test_the_total_caps_every_wait_and_says_so():
    d, clock = deadline(first_byte=5, idle=2, total=10)
    clock.advance(6)
    d.got_first = True
    assert d.next_wait() == (2, "idle")
    clock.advance(2.5)
    assert d.next_wait() == (1.5, "total")  # 1.5 s of the total left: less than an idle gap
    clock.advance(1.5)
    assert d.next_wait() == (0, "total")
    clock.advance(1)
    assert d.next_wait() == (-1, "total")  # already past: the caller times out at once


def test_a_total_shorter_than_the_first_byte_limit_wins_from_the_start():
    d, _ = deadline(first_byte=60, idle=60, total=3)
    assert d.next_wait() == (3, "total")
