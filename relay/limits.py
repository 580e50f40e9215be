"""Tenant limits: which counters a request touches, and the answers and headers they produce."""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import ModelLimits, TenantConfig

from .store import Admission, AdmitRequest, Budget, Concurrency, Rate

LEASE_TTL = 60.0  # a lease not renewed (see leases.LeaseKeeper) frees its slot after this
# Tokens a budget reserves for the answer of a request that sets no max tokens: without it a
# request would reserve only its prompt, and concurrent requests could overspend freely.
BUDGET_OUTPUT_RESERVE = 4096


def counter(kind: str, tenant: str, *more: str) -> str:
    """A counter's name, `<kind>:<tenant>[:<more>...]`. Every counter one admission touches
    (the tenant's, its models', its virtual key's) names the tenant second: the Redis store
    makes that its hash tag, since a Redis Cluster runs a script only on keys of one slot.
    ':' (and '%') in a tenant name are escaped, so the second field is exactly the tenant."""
    return ":".join((kind, tenant.replace("%", "%25").replace(":", "%3A"), *more))


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
    estimate: int = 0  # tokens charged to the token rates at admission
    reserve: int = 0  # tokens reserved on the budgets at admission
    model_keys: set[str] = field(default_factory=set)  # counters of a per-model limit


def plan(tenant: TenantConfig, model: str, prompt_tokens: Callable[[], int], max_out: int | None, lease: str, now: float) -> Plan:
    """`prompt_tokens` (the prompt's estimated size) is only computed when a tokens limit or
    a budget needs it. Token rates are charged prompt + max_out; a budget reserves prompt +
    max_out, or BUDGET_OUTPUT_RESERVE for the answer when max_out is not given. Both are
    settled to the real usage when the request ends."""
    lim = tenant.limits
    if not (lim.rpm or lim.tpm or lim.max_concurrent or lim.budget is not None or (lim.models and model in lim.models)):
        return Plan(AdmitRequest(lease=lease, lease_ttl=LEASE_TTL))  # nothing to count: the common case, kept cheap
    prompt_tokens = functools.cache(prompt_tokens)  # asked for at most once
    scopes: list[tuple[tuple[str, ...], ModelLimits]] = [((), lim)]
    per_model = lim.models.get(model)
    if per_model is not None:
        scopes.append(((model,), per_model))
    req = AdmitRequest(lease=lease, lease_ttl=LEASE_TTL)
    token_rates: list[Rate] = []
    out = Plan(req, token_rates)
    for scope, lims in scopes:
        keys: list[str] = []
        if lims.rpm:
            keys.append(counter("rpm", tenant.name, *scope))
            req.rates.append(Rate(keys[-1], "requests", lims.rpm, 1))
        if lims.tpm:
            if not token_rates:
                out.estimate = prompt_tokens() + (max_out or 0)
            keys.append(counter("tpm", tenant.name, *scope))
            rate = Rate(keys[-1], "tokens", lims.tpm, out.estimate)
            req.rates.append(rate)
            token_rates.append(rate)
        if lims.max_concurrent:
            keys.append(counter("conc", tenant.name, *scope))
            req.concurrency.append(Concurrency(keys[-1], lims.max_concurrent))
        if lims is per_model:
            out.model_keys = set(keys)
    if lim.budget is not None:
        period, ttl = period_key(lim.budget.period, now)
        out.reserve = prompt_tokens() + (BUDGET_OUTPUT_RESERVE if max_out is None else max_out)
        req.budgets.append(Budget(counter("budget", tenant.name, period), lim.budget.tokens, ttl, out.reserve))
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
    if adm.failed == "budget":
        return RelayError(
            429, f"Tenant '{tenant}' has spent its token budget for this period.",
            type="insufficient_quota", code="insufficient_quota", headers=headers(adm),
        )
    scope = "for this model " if adm.failed_key in plan.model_keys else ""
    what = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrency": "concurrent requests"}[adm.failed or "requests"]
    return RelayError(
        429, f"Rate limit reached {scope}on {what}; retry after {retry}s.",
        type="rate_limit_error", code="rate_limit_exceeded", headers={**headers(adm), "retry-after": retry},
    )
