"""Circuit breakers on an injected clock: closed -> open -> half-open -> closed / open again."""
from __future__ import annotations

from relay.breaker import Breakers
from relay_config.schema import CooldownConfig

from ..support import Clock


def breakers(failures: int = 3, seconds: float = 30) -> tuple[Breakers, Clock]:
    clock = Clock()
    return Breakers(CooldownConfig(failures=failures, seconds=seconds), clock=clock), clock


def state(b: Breakers, channel: str) -> str:
    return str(b.snapshot()[channel]["state"])


def test_an_unknown_channel_is_closed_and_nothing_is_recorded_for_it():
    b, _ = breakers()
    assert b.allow("a") and b.is_up("a") and b.retry_after("a") == 0.0
    b.success("a")
    b.release("a")
    assert b.snapshot() == {}


def test_opens_after_the_configured_consecutive_failures_only():
    b, _ = breakers(failures=3)
    b.failure("a")
    b.failure("a")
    assert state(b, "a") == "closed" and b.allow("a") and b.snapshot()["a"]["consecutive_failures"] == 2
    b.failure("a")
    assert state(b, "a") == "open" and not b.allow("a") and not b.is_up("a")
    assert b.retry_after("a") == 30.0


def test_a_success_resets_the_count_of_consecutive_failures():
    b, _ = breakers(failures=3)
    for _ in range(2):
        b.failure("a")
    b.success("a")
    for _ in range(2):
        b.failure("a")
    assert state(b, "a") == "closed" and b.snapshot()["a"]["consecutive_failures"] == 2


def test_channels_have_separate_breakers():
    b, _ = breakers(failures=1)
    b.failure("a")
    assert not b.allow("a") and b.allow("b") and "b" not in b.snapshot()


def test_retry_after_counts_down_with_the_clock_and_half_opens_at_the_end():
    b, clock = breakers(failures=1, seconds=30)
    b.failure("a")
    clock.advance(10)
    assert b.retry_after("a") == 20.0 and b.snapshot()["a"]["retry_after"] == 20.0
    clock.advance(19.5)
    assert state(b, "a") == "open" and not b.allow("a")
    clock.advance(0.5)  # exactly at the end of the cooldown
    assert state(b, "a") == "half_open" and b.retry_after("a") == 0.0 and b.is_up("a")


def test_half_open_lets_exactly_one_probe_through():
    b, clock = breakers(failures=1, seconds=30)
    b.failure("a")
    clock.advance(30)
    assert b.allow("a")  # the probe
    assert not b.allow("a") and not b.allow("a")  # everyone else waits for its verdict
    assert b.is_up("a")  # half-open is not "open": the channel counts as up for readiness


def test_a_successful_probe_closes_the_breaker():
    b, clock = breakers(failures=2, seconds=30)
    b.failure("a")
    b.failure("a")
    clock.advance(31)
    assert b.allow("a")
    b.success("a")
    assert state(b, "a") == "closed" and b.snapshot()["a"]["consecutive_failures"] == 0
    assert all(b.allow("a") for _ in range(5))
    b.failure("a")  # closed again means the full threshold applies again
    assert state(b, "a") == "closed"


def test_a_failed_probe_reopens_for_a_whole_cooldown_whatever_the_threshold():
    b, clock = breakers(failures=3, seconds=30)
    for _ in range(3):
        b.failure("a")
    clock.advance(30)
    assert b.allow("a")
    clock.advance(2)  # the probe took 2 s and failed
    b.failure("a")
    assert state(b, "a") == "open" and b.retry_after("a") == 30.0 and not b.allow("a")
    clock.advance(30)
    assert state(b, "a") == "half_open" and b.allow("a") and not b.allow("a")


def test_a_released_probe_lets_the_next_request_probe():
    b, clock = breakers(failures=1, seconds=30)
    b.failure("a")
    clock.advance(30)
    assert b.allow("a") and not b.allow("a")
    b.release("a")  # the probing client went away: no verdict on the channel
    assert state(b, "a") == "half_open"
    assert b.allow("a") and not b.allow("a")  # one new probe, still only one


def test_release_of_a_closed_breaker_changes_nothing():
    b, _ = breakers(failures=2)
    b.failure("a")
    b.release("a")
    assert state(b, "a") == "closed" and b.snapshot()["a"]["consecutive_failures"] == 1


def test_the_upstreams_retry_after_lengthens_the_cooldown_but_never_shortens_it():
    b, _ = breakers(failures=1, seconds=30)
    b.failure("long", retry_after=70)
    b.failure("short", retry_after=5)
    assert b.retry_after("long") == 70.0 and b.retry_after("short") == 30.0


def test_retry_after_below_the_threshold_does_not_open():
    b, _ = breakers(failures=2, seconds=30)
    b.failure("a", retry_after=600)
    assert state(b, "a") == "closed" and b.retry_after("a") == 0.0
