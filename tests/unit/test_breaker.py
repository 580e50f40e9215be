"""Circuit breakers on an injected clock: closed -> open -> half-open -> closed / open again."""
from __future__ import annotations

from relay.breaker import DEFAULT_BACKOFF, Breakers
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


def test_failures_say_why_the_breaker_opened_until_it_closes():
    b, clock = breakers(failures=2, seconds=30)
    b.failure("a", "HTTP 503")
    assert b.snapshot()["a"]["reason"] == ""  # still closed
    b.failure("a", "HTTP 503")
    assert b.snapshot()["a"]["reason"] == "HTTP 503 (2 consecutive failures)"
    clock.advance(30)
    assert b.allow("a")
    b.success("a")
    assert b.snapshot()["a"]["reason"] == ""


def test_an_upstream_429_throttles_for_its_retry_after_without_counting_as_a_failure():
    b, clock = breakers(failures=1, seconds=30)
    b.throttled("a", 7)
    assert state(b, "a") == "throttled" and not b.allow("a") and b.retry_after("a") == 7.0
    assert b.is_up("a") and b.snapshot()["a"]["consecutive_failures"] == 0  # backpressure, not sickness
    clock.advance(6.5)
    assert not b.allow("a") and b.retry_after("a") == 0.5
    clock.advance(0.5)
    assert state(b, "a") == "closed" and b.allow("a") and b.allow("a")  # no probe: it was never open


def test_a_429_without_retry_after_backs_off_for_the_default():
    b, clock = breakers()
    b.throttled("a", None)
    assert b.retry_after("a") == DEFAULT_BACKOFF
    clock.advance(DEFAULT_BACKOFF)
    assert b.allow("a")
    b.throttled("b", 0)  # "retry now" is taken at its word
    assert b.allow("b")


def test_a_throttled_probe_gives_up_its_turn():
    b, clock = breakers(failures=1, seconds=30)
    b.failure("a")
    clock.advance(30)
    assert b.allow("a")  # the probe
    b.throttled("a", 2)  # ... answered 429: no verdict on its health
    assert state(b, "a") == "half_open" and not b.allow("a")
    clock.advance(2)
    assert b.allow("a") and not b.allow("a")  # a new single probe once the backoff is over


def test_on_cooldown_is_called_each_time_a_channel_starts_cooling_down():
    cooled: list[str] = []
    clock = Clock()
    b = Breakers(CooldownConfig(failures=2, seconds=30), clock=clock, on_cooldown=cooled.append)
    b.failure("a")
    assert cooled == []
    b.failure("a")
    b.throttled("b", 1)
    clock.advance(30)
    assert b.allow("a")
    b.failure("a")  # the failed probe reopens: a new cooldown
    assert cooled == ["a", "b", "a"]
