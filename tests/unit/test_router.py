"""The router on a seeded RNG: tiers by priority, weighted order inside a tier, aliases and
allowlists. Orders are computed from the same draws, never counted statistically."""
from __future__ import annotations

import random

import pytest

from relay.router import Router, weighted_order
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.mock import MockAdaptor
from relay_config.schema import MockChannel, TenantConfig

SEED = 20260301


def channel(name: str, models: dict[str, str] | list[str], priority: int = 0, weight: float = 1) -> tuple[MockChannel, MockAdaptor]:
    cfg = MockChannel(name=name, type="mock", models=models, priority=priority, weight=weight)
    return cfg, MockAdaptor(cfg)


def tenant(models: list[str] | None = None) -> TenantConfig:
    return TenantConfig(name="acme", keys=["k"], models=models)


class Draws(random.Random):
    """A Random whose `random()` returns the given numbers in turn."""

    def __init__(self, values: list[float]):
        super().__init__(0)
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values)


def names(cands) -> list[str]:
    return [c.channel.name for c in cands]


def expected_order(weights: dict[str, float], rng: random.Random) -> list[str]:
    """Weighted sampling without replacement (Efraimidis-Spirakis): one draw u per channel in
    config order; the channel with the largest u ** (1 / weight) goes first."""
    keys = {name: rng.random() ** (1 / w) for name, w in weights.items()}
    return sorted(keys, key=keys.__getitem__, reverse=True)


def test_one_tier_is_ordered_by_the_seeded_draws():
    weights = {"heavy": 3.0, "light": 1.0, "mid": 2.0}
    router = Router([channel(n, ["demo"], weight=w) for n, w in weights.items()], rng=random.Random(SEED))
    twin = random.Random(SEED)
    for _ in range(50):
        assert names(router.candidates(tenant(), "demo")) == expected_order(weights, twin)


def test_the_heavier_channel_wins_when_its_draw_scaled_by_weight_is_larger():
    heavy, light = channel("heavy", ["demo"], weight=3), channel("light", ["demo"], weight=1)
    # 0.5 ** (1/3) = 0.79 > 0.6: heavy first; 0.2 ** (1/3) = 0.58 < 0.7: light first.
    assert names(Router([heavy, light], rng=Draws([0.5, 0.6])).candidates(tenant(), "demo")) == ["heavy", "light"]
    assert names(Router([heavy, light], rng=Draws([0.2, 0.7])).candidates(tenant(), "demo")) == ["light", "heavy"]


def test_weights_are_shares_of_first_place_exactly():
    """Over a uniform grid of draws (a deterministic quadrature, not sampling), a weight-3
    channel comes first in 3/4 of the cases against a weight-1 channel."""
    router = Router([channel("heavy", ["demo"], weight=3), channel("light", ["demo"], weight=1)])
    tier = router.candidates(tenant(), "demo")  # one tier: the two channels
    n = 100
    grid = [(i + 0.5) / n for i in range(n)]
    rng = Draws([v for u in grid for w in grid for v in (u, w)])
    first = [weighted_order(tier, rng)[0].channel.name for _ in range(n * n)]
    assert abs(first.count("heavy") / len(first) - 3 / 4) < 0.001


def test_tiers_come_in_priority_order_whatever_the_weights():
    chans = [channel("spare", ["demo"], priority=5, weight=100), channel("a", ["demo"], weight=1),
             channel("b", ["demo"], weight=1), channel("backup", ["demo"], priority=1)]
    router = Router(chans, rng=random.Random(SEED))
    twin = random.Random(SEED)
    for _ in range(20):
        assert names(router.candidates(tenant(), "demo")) == [*expected_order({"a": 1, "b": 1}, twin), "backup", "spare"]


def test_a_single_channel_tier_draws_nothing():
    rng = random.Random(SEED)
    state = rng.getstate()
    router = Router([channel("only", ["demo"]), channel("backup", ["demo"], priority=1)], rng=rng)
    assert names(router.candidates(tenant(), "demo")) == ["only", "backup"]
    assert rng.getstate() == state
    assert weighted_order([], rng) == []


def test_candidates_carry_the_upstream_name_and_the_public_model():
    router = Router([channel("a", {"demo": "upstream-demo", "other": "o"})], aliases={"fast": "demo"})
    (cand,) = router.candidates(tenant(), "fast")
    assert (cand.channel.name, cand.upstream_model, cand.model) == ("a", "upstream-demo", "demo")
    assert isinstance(cand.adaptor, MockAdaptor) and cand.adaptor.name == "a"


def test_an_alias_routes_like_its_target():
    chans = [channel("a", ["demo"], weight=2), channel("b", ["demo"], weight=1)]
    by_alias = Router(chans, aliases={"fast": "demo"}, rng=random.Random(SEED))
    by_name = Router(chans, aliases={"fast": "demo"}, rng=random.Random(SEED))
    for _ in range(10):
        assert names(by_alias.candidates(tenant(), "fast")) == names(by_name.candidates(tenant(), "demo"))


def test_an_unknown_model_is_a_404_naming_the_param():
    router = Router([channel("a", ["demo"])], aliases={"fast": "demo"})
    with pytest.raises(RelayError) as e:
        router.candidates(tenant(), "nope")
    assert (e.value.status, e.value.param, e.value.code) == (404, "model", "model_not_found")


@pytest.mark.parametrize("allow, model, ok", [
    (None, "demo", True),
    (["demo"], "demo", True),
    (["de*"], "demo", True),
    (["demo"], "fast", True),  # an alias is usable under the name it points to
    (["fast"], "fast", True),  # ... or under its own name
    (["fast"], "demo", False),  # allowing the alias does not allow the target's own name
    (["other"], "demo", False),
    (["other"], "fast", False),
])
def test_allowlists(allow, model, ok):
    router = Router([channel("a", ["demo", "other"])], aliases={"fast": "demo"})
    if ok:
        assert names(router.candidates(tenant(allow), model)) == ["a"]
    else:
        with pytest.raises(RelayError) as e:
            router.candidates(tenant(allow), model)
        # Outside the allowlist looks exactly like a model that does not exist (no oracle).
        assert (e.value.status, e.value.param, e.value.code, e.value.type) == (404, "model", "model_not_found", "invalid_request_error")


@pytest.mark.parametrize("allow, listed", [
    (None, ["demo", "other", "fast"]),
    (["demo"], ["demo", "fast"]),
    (["fast"], ["fast"]),
    (["o*"], ["other"]),
    ([], []),
])
def test_models_for_lists_what_the_tenant_may_use(allow, listed):
    router = Router([channel("a", ["demo"]), channel("b", ["demo", "other"])], aliases={"fast": "demo"})
    assert router.models_for(tenant(allow)) == listed
