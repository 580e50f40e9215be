"""A virtual key's policy inside its tenant's: its own counters (`<kind>:<tenant>:key:<id>`,
named after the tenant like the tenant's own, so one admission stays in one Redis Cluster
slot), added to the tenant's admission plan so a request must pass both (built from the store's dataclasses;
relay.limits stays the tenant's), and its model allowlist."""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import TenantConfig

from ..limits import BUDGET_OUTPUT_RESERVE, Plan, counter, headers, period_key
from ..router import Router
from ..store import Admission, Budget, Concurrency, Rate
from .appkeys import VIRTUAL_KEY
from .model import VirtualKey


def extend(plan: Plan, key: VirtualKey, prompt_tokens: Callable[[], int], max_out: int | None, now: float) -> set[str]:
    """Adds the key's limits to `plan`, charged as relay.limits charges the tenant's (token
    rates prompt + max_out, a budget reserving the same as the tenant's would); returns the
    names of the counters added."""
    lim, req = key.key_limits, plan.req

    def name(kind: str, *more: str) -> str:
        return counter(kind, key.tenant, "key", key.id, *more)

    added: list[str] = []
    if lim.rpm:
        req.rates.append(Rate(name("rpm"), "requests", lim.rpm, 1))
        added.append(name("rpm"))
    if lim.tpm:
        if not plan.token_rates:
            plan.estimate = prompt_tokens() + (max_out or 0)
        rate = Rate(name("tpm"), "tokens", lim.tpm, plan.estimate)
        req.rates.append(rate)
        plan.token_rates.append(rate)
        added.append(rate.key)
    if lim.max_concurrent:
        req.concurrency.append(Concurrency(name("conc"), lim.max_concurrent))
        added.append(name("conc"))
    if lim.budget is not None:
        period, ttl = period_key(lim.budget.period, now)
        if not req.budgets:  # else the tenant's budget set the reservation, settled once for all
            plan.reserve = prompt_tokens() + (BUDGET_OUTPUT_RESERVE if max_out is None else max_out)
        req.budgets.append(Budget(name("budget", period), lim.budget.tokens, ttl, plan.reserve))
        added.append(name("budget", period))
    return set(added)


def rejection(adm: Admission) -> RelayError:
    """The 429 for a request refused by one of the key's own counters."""
    if adm.failed == "budget":
        return RelayError(429, "This API key has spent its token budget for this period.",
                          type="insufficient_quota", code="insufficient_quota", headers=headers(adm))
    retry = str(max(1, int(adm.retry_after + 0.999)))
    what = {"requests": "requests per minute", "tokens": "tokens per minute", "concurrency": "concurrent requests"}[adm.failed or "requests"]
    return RelayError(429, f"Rate limit reached for this API key on {what}; retry after {retry}s.",
                      type="rate_limit_error", code="rate_limit_exceeded", headers={**headers(adm), "retry-after": retry})


def visible_models(request: web.Request, router: Router, tenant: TenantConfig) -> list[str]:
    """The tenant's models, narrowed by the allowlist of the virtual key that authenticated
    the request (matched, as at admission, on the model an alias names)."""
    key = request.get(VIRTUAL_KEY)
    models = router.models_for(tenant)
    return models if key is None else [m for m in models if key.may_use(router.aliases.get(m, m))]
