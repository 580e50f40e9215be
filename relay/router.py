"""Public model name -> the channels that serve it, filtered by what the tenant may use."""
from __future__ import annotations

from dataclasses import dataclass

from adaptors.base import Adaptor
from adaptors.errors import RelayError
from config.schema import ChannelConfig, TenantConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: ChannelConfig
    adaptor: Adaptor
    upstream_model: str


class Router:
    def __init__(self, channels: list[tuple[ChannelConfig, Adaptor]]):
        self._by_model: dict[str, list[Candidate]] = {}
        for cfg, adaptor in channels:
            for public, upstream in cfg.models.items():
                self._by_model.setdefault(public, []).append(Candidate(cfg, adaptor, upstream))

    def models_for(self, tenant: TenantConfig) -> list[str]:
        return [m for m in self._by_model if tenant.may_use(m)]

    def candidates(self, tenant: TenantConfig, model: str) -> list[Candidate]:
        found = self._by_model.get(model)
        if found is None:
            raise RelayError(404, f"The model '{model}' does not exist.", param="model", code="model_not_found")
        if not tenant.may_use(model):
            raise RelayError(
                403,
                f"Your API key is not allowed to use the model '{model}'.",
                type="permission_error",
                param="model",
                code="model_not_allowed",
            )
        return found
