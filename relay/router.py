"""Public model name -> the channels that serve it, in the order to try them.

Channels are tried tier by tier (`priority`, lower first); inside a tier the order is a
weighted random draw (`weight`), so traffic spreads in proportion to the weights.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from relay_adaptors.kernel.base import Adaptor
from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import ChannelConfig, TenantConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: ChannelConfig
    adaptor: Adaptor
    upstream_model: str
    model: str  # the public name it serves (an alias's target)


def weighted_order(items: list[Candidate], rng: random.Random) -> list[Candidate]:
    """A random order in which heavier items tend to come first (weighted sampling without
    replacement: sort by u ** (1 / weight))."""
    if len(items) < 2:
        return list(items)
    return sorted(items, key=lambda c: rng.random() ** (1.0 / c.channel.weight), reverse=True)


def model_not_found(model: str) -> RelayError:
    shown = model if len(model) <= 200 else model[:200] + "..."  # reflected, so bounded
    return RelayError(404, f"The model '{shown}' does not exist.", param="model", code="model_not_found")


class Router:
    def __init__(self, channels: list[tuple[ChannelConfig, Adaptor]], aliases: dict[str, str] | None = None,
                 rng: random.Random | None = None):
        self.aliases = dict(aliases or {})
        self.rng = rng or random.Random()
        self._tiers: dict[str, list[list[Candidate]]] = {}
        by_model: dict[str, list[Candidate]] = {}
        for cfg, adaptor in channels:
            for public, upstream in cfg.models.items():
                by_model.setdefault(public, []).append(Candidate(cfg, adaptor, upstream, public))
        for model, cands in by_model.items():
            priorities = sorted({c.channel.priority for c in cands})
            self._tiers[model] = [[c for c in cands if c.channel.priority == p] for p in priorities]

    def models_for(self, tenant: TenantConfig) -> list[str]:
        names = list(self._tiers) + list(self.aliases)
        return [m for m in names if self._allowed(tenant, m)]

    def _allowed(self, tenant: TenantConfig, model: str) -> bool:
        # An alias is usable under its own name or under the name it points to.
        return tenant.may_use(model) or (model in self.aliases and tenant.may_use(self.aliases[model]))

    def candidates(self, tenant: TenantConfig, model: str) -> list[Candidate]:
        tiers = self._tiers.get(self.aliases.get(model, model))
        # A model outside the tenant's allowlist is answered exactly like one that does not
        # exist, so a tenant cannot learn what else the gateway serves.
        if tiers is None or not self._allowed(tenant, model):
            raise model_not_found(model)
        return [c for tier in tiers for c in weighted_order(tier, self.rng)]
