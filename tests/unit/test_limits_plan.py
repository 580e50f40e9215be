"""Limits planning: which counters one request touches, per-model scopes, budget periods at
explicit UTC times, and the 429 answers built from an admission."""
from __future__ import annotations

import calendar

import pytest

from relay.limits import BUDGET_OUTPUT_RESERVE, LEASE_TTL, headers, period_key, plan, rejection
from relay.store import Admission, Budget, Concurrency, Rate
from relay_config.schema import TenantConfig


def tenant(name: str = "acme", **limits) -> TenantConfig:
    return TenantConfig(name=name, keys=["k"], limits=limits)


def utc(*ymdhms: int) -> float:
    return float(calendar.timegm((*ymdhms, 0, 0, 0)))


NOW = utc(2026, 3, 5, 12, 0, 0)


class Estimate:
    """The token estimate, counting how often it is asked for."""

    def __init__(self, value: int = 42):
        self.value, self.calls = value, 0

    def __call__(self) -> int:
        self.calls += 1
        return self.value


def test_no_limits_touch_no_counters_and_never_estimate():
    est = Estimate()
    p = plan(tenant(), "gpt", est, None, "lease-1", NOW)
    assert p.req.empty and p.model_keys == set() and p.token_rates == [] and est.calls == 0


def test_a_request_limit_is_one_request_and_needs_no_estimate():
    est = Estimate()
    p = plan(tenant(rpm=60), "gpt", est, None, "lease-1", NOW)
    assert p.req.rates == [Rate("rpm:acme", "requests", 60, 1)]
    assert p.req.concurrency == [] and p.req.budgets == [] and est.calls == 0


def test_token_limits_cost_the_estimate_computed_once():
    est = Estimate(42)
    p = plan(tenant(tpm=1000, models={"gpt": {"tpm": 100}}), "gpt", est, None, "lease-1", NOW)
    assert est.calls == 1 and p.estimate == 42
    assert p.req.rates == [Rate("tpm:acme", "tokens", 1000, 42), Rate("tpm:acme:gpt", "tokens", 100, 42)]
    assert p.token_rates == p.req.rates  # the rates to settle with the real count afterwards


def test_concurrency_holds_a_lease_with_a_ttl():
    p = plan(tenant(max_concurrent=4), "gpt", Estimate(), None, "lease-7", NOW)
    assert p.req.concurrency == [Concurrency("conc:acme", 4)]
    assert (p.req.lease, p.req.lease_ttl) == ("lease-7", LEASE_TTL)


def test_per_model_limits_add_their_own_scope_for_that_model_only():
    t = tenant(rpm=100, models={"gpt": {"rpm": 1, "max_concurrent": 2}})
    p = plan(t, "gpt", Estimate(), None, "l", NOW)
    assert p.req.rates == [Rate("rpm:acme", "requests", 100, 1), Rate("rpm:acme:gpt", "requests", 1, 1)]
    assert p.req.concurrency == [Concurrency("conc:acme:gpt", 2)]
    assert p.model_keys == {"rpm:acme:gpt", "conc:acme:gpt"}
    other = plan(t, "claude", Estimate(), None, "l", NOW)
    assert other.req.rates == [Rate("rpm:acme", "requests", 100, 1)] and other.req.concurrency == [] and other.model_keys == set()


def test_counters_are_keyed_by_tenant():
    a = plan(tenant("a", rpm=5), "m", Estimate(), None, "l", NOW)
    b = plan(tenant("b", rpm=5), "m", Estimate(), None, "l", NOW)
    assert {r.key for r in a.req.rates}.isdisjoint(r.key for r in b.req.rates)


@pytest.mark.parametrize("period, when, key, ttl", [
    ("day", utc(2026, 3, 5, 12, 0, 0), "budget:acme:2026-03-05", 2 * 86400),
    ("day", utc(2026, 3, 31, 23, 59, 59), "budget:acme:2026-03-31", 2 * 86400),
    ("day", utc(2026, 4, 1, 0, 0, 0), "budget:acme:2026-04-01", 2 * 86400),
    ("month", utc(2026, 3, 31, 23, 59, 59), "budget:acme:2026-03", 40 * 86400),
    ("month", utc(2026, 4, 1, 0, 0, 0), "budget:acme:2026-04", 40 * 86400),
    ("month", utc(2026, 12, 31, 23, 59, 59), "budget:acme:2026-12", 40 * 86400),
])
def test_budgets_count_in_utc_calendar_periods(period, when, key, ttl):
    est = Estimate()
    p = plan(tenant(budget={"tokens": 500, "period": period}), "gpt", est, None, "l", when)
    assert p.req.budgets == [Budget(key, 500, ttl, 42 + BUDGET_OUTPUT_RESERVE)] and est.calls == 1
    assert period_key(period, when) == (key.removeprefix("budget:acme:"), ttl)


def test_max_tokens_is_part_of_the_token_estimate_and_of_the_budget_reservation():
    est = Estimate(42)
    p = plan(tenant(tpm=1000, budget={"tokens": 5000, "period": "day"}), "gpt", est, 300, "l", NOW)
    assert p.estimate == 342 and p.req.rates == [Rate("tpm:acme", "tokens", 1000, 342)]
    assert p.reserve == 342 and p.req.budgets[0].cost == 342
    assert est.calls == 1  # one estimate for both


def test_a_budget_reserves_an_answer_allowance_when_no_max_tokens_is_given():
    # Token rates charge the prompt alone (settled later); the budget must not, or concurrent
    # requests without max_tokens could all be admitted against the last few tokens.
    p = plan(tenant(tpm=1000, budget={"tokens": 5000, "period": "day"}), "gpt", Estimate(42), None, "l", NOW)
    assert p.estimate == 42 and p.reserve == 42 + BUDGET_OUTPUT_RESERVE
    assert plan(tenant(budget={"tokens": 5000}), "gpt", Estimate(42), 0, "l", NOW).reserve == 42


def test_a_budget_is_per_tenant_not_per_model():
    t = tenant(budget={"tokens": 500, "period": "day"}, models={"gpt": {"rpm": 1}})
    assert plan(t, "gpt", Estimate(), None, "l", NOW).req.budgets == plan(t, "other", Estimate(), None, "l", NOW).req.budgets


def test_rate_headers_use_openais_reset_format():
    adm = Admission(ok=True, status={"requests": (60, 59, 0.25), "tokens": (1000, 10, 90.0)})
    assert headers(adm) == {
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "1m30s",
    }
    assert headers(Admission(ok=True, status={"requests": (1, 0, 1.5)}))["x-ratelimit-reset-requests"] == "1.5s"


def test_a_per_model_refusal_says_so_and_gives_a_whole_retry_after():
    p = plan(tenant(rpm=100, models={"gpt": {"rpm": 1}}), "gpt", Estimate(), None, "l", NOW)
    err = rejection(Admission(ok=False, failed="requests", failed_key="rpm:acme:gpt", retry_after=0.2), "acme", p)
    assert err.status == 429 and err.code == "rate_limit_exceeded" and err.headers["retry-after"] == "1"
    assert "for this model" in err.message and "requests per minute" in err.message
    tenant_wide = rejection(Admission(ok=False, failed="requests", failed_key="rpm:acme", retry_after=2.5), "acme", p)
    assert "for this model" not in tenant_wide.message and tenant_wide.headers["retry-after"] == "3"


def test_a_spent_budget_is_insufficient_quota():
    p = plan(tenant(budget={"tokens": 5}), "gpt", Estimate(), None, "l", NOW)
    err = rejection(Admission(ok=False, failed="budget", failed_key=p.req.budgets[0].key, retry_after=3600), "acme", p)
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "insufficient_quota")
