"""Everything derived from one config: swapped as a whole on reload, never mutated."""
from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from adaptors.registry import make_adaptor
from config.schema import RelayConfig

from .auth import KeyIndex
from .router import Router


@dataclass(frozen=True, slots=True)
class Runtime:
    config: RelayConfig
    keys: KeyIndex
    router: Router


def build_runtime(config: RelayConfig, session: aiohttp.ClientSession) -> Runtime:
    channels = [(ch, make_adaptor(ch, session)) for ch in config.channels]
    return Runtime(config, KeyIndex(config.tenants), Router(channels, config.aliases))
