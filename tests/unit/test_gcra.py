"""GCRA on explicit times: bursts, refill, oversized costs and settlement."""
from __future__ import annotations

import pytest

from relay import gcra


def test_a_burst_of_the_limit_then_one_per_interval():
    tat, now = 0.0, 1000.0
    for left in (2, 1, 0):
        v = gcra.check(tat, now, 3, 1)
        assert v.allowed and v.remaining == left and v.retry_after == 0.0
        tat = v.new_tat
    refused = gcra.check(tat, now, 3, 1)
    assert not refused.allowed and refused.new_tat == tat  # a refusal consumes nothing
    assert refused.retry_after == pytest.approx(20.0) and refused.reset == pytest.approx(60.0)
    assert not gcra.check(tat, now + 19.9, 3, 1).allowed
    assert gcra.check(tat, now + 20.0, 3, 1).allowed  # one interval (60 s / 3) later


def test_a_full_window_later_the_whole_burst_is_back():
    tat = gcra.check(0.0, 1000.0, 10, 10).new_tat
    assert gcra.check(tat, 1000.0, 10, 1).allowed is False
    v = gcra.check(tat, 1060.0, 10, 10)
    assert v.allowed and v.remaining == 0


def test_a_cost_above_the_limit_passes_once_the_window_is_empty():
    v = gcra.check(0.0, 1000.0, 100, 500)
    assert v.allowed and v.new_tat == pytest.approx(1060.0)  # counted as the whole window, not 5 windows
    assert not gcra.check(v.new_tat, 1000.0, 100, 1).allowed


def test_fractional_costs():
    v = gcra.check(0.0, 0.0, 60, 0.5)
    assert v.allowed and v.new_tat == pytest.approx(0.5) and v.remaining == 59


def test_adjust_charges_more_or_refunds_without_going_below_now():
    assert gcra.adjust(1010.0, 1000.0, 60, 5) == pytest.approx(1015.0)
    assert gcra.adjust(990.0, 1000.0, 60, 5) == pytest.approx(1005.0)  # an idle key starts from now
    assert gcra.adjust(1010.0, 1000.0, 60, -4) == pytest.approx(1006.0)
    assert gcra.adjust(1010.0, 1000.0, 60, -40) == pytest.approx(1000.0)  # never a credit beyond "empty"


def test_a_refund_lets_the_next_request_in():
    tat = gcra.check(0.0, 1000.0, 100, 90).new_tat  # an estimate of 90 of 100 tokens
    assert not gcra.check(tat, 1000.0, 100, 20).allowed
    tat = gcra.adjust(tat, 1000.0, 100, -70)  # it used 20
    assert gcra.check(tat, 1000.0, 100, 20).allowed
