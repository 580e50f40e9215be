"""Tenant limits: which counters a request touches, and the answers and headers they produce."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from relay_adaptors.errors import RelayError
from relay_config.schema import TenantConfig

from .store import AdmitRequest, Admission, Budget, Concurrency, Rate

LEASE_TTL = 900.0


def period_key(period: str, now: float) -> tuple[str, int]:
    """The calendar period a budget counts in (UTC), and how long its counter must live."""
    t = time.gmtime(now)
    if period == "day":
        return time.strftime("%Y-%m-%d", t), 2 * 86400
    return time.strftime("%Y-%m", t), 40 * 86400


@dataclass(slots=True)
class Plan:
    """The counters one request touches."""

    req: AdmitRequest
    token_rates: list[Rate] = field(default_factory=list)
    estimate: int = 0
    model_keys: set[str] = field(default_factory=set)  # counters of a per-model limit


def plan(tenant: TenantConfig, model: str, estimate: Callable[[], int], lease: str, now: float) -> Plan:
    """`estimate` (the token cost guessed before the answer) is only computed when a tokens
    limit needs it."""
    lim = tenant.limits
    scopes = [(f"{tenant.name}", lim)]
    per_model = lim.models.get(model)
    if per_model is not None:
        scopes.append((f"{tenant.name}:{model}", per_model))
    req = AdmitRequest(lease=lease, lease_ttl=LEASE_TTL)
    token_rates: list[Rate] = []
    out = Plan(req, token_rates)
    for scope, l in scopes:
        if l.rpm:
            req.rates.append(Rate(f"rpm:{scope}", "requests", l.rpm, 1))
        if l.tpm:
            if not token_rates:
                out.estimate = estimate()
            rate = Rate(f"tpm:{scope}", "tokens", l.tpm, out.estimate)
            req.rates.append(rate)
            token_rates.append(rate)
        if l.max_concurrent:
            req.concurrency.append(Concurrency(f"conc:{scope}", l.max_concurrent))
        if l is per_model:
            out.model_keys = {x.key for x in [*req.rates, *req.concurrency] if x.key.endswith(scope)}
    if lim.budget is not None:
        period, ttl = period_key(lim.budget.period, now)
        req.budgets.append(Budget(f"budget:{tenant.name}:{period}", lim.budget.tokens, ttl))
    return out


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s}s"


def headers(adm: Admission) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        if kind in adm.status:
            limit, remaining, reset = adm.status[kind]
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = _duration(reset)
    return out


def rejection(adm: Admission, tenant: str, plan: Plan) -> RelayError:
    retry = str(max(1, int(adm.retry_after + 0.999)))
    hdrs = {**headers(adm), "retry-after": retry}
    if adm.failed == "budget":
        return RelayError(
            429, f"Tenant '{tenant}' has spent its token budget for this period.",
            type="insufficient_quota", code="insufficient_quota", headers={**headers(adm)},
        )
    scope = "for this model " if adm.failed_key in plan.model_keys else ""
    what = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrency": "concurrent requests"}[adm.failed or "requests"]
    return RelayError(
        429, f"Rate limit reached {scope}on {what}; retry after {retry}s.",
        type="rate_limit_error", code="rate_limit_exceeded", headers=hdrs,
    )
