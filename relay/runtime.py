"""Everything derived from one config: swapped as a whole on reload, never mutated."""
from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from relay_adaptors.kernel import redaction
from relay_adaptors.kernel.base import Adaptor
from relay_adaptors.kernel.registry import make_adaptor
from relay_config.schema import ChannelConfig, RelayConfig

from .auth import KeyIndex
from .router import Router


@dataclass(frozen=True, slots=True)
class Runtime:
    config: RelayConfig
    keys: KeyIndex
    router: Router
    channels: list[tuple[ChannelConfig, Adaptor]]


def build_runtime(config: RelayConfig, session: aiohttp.ClientSession, previous: Runtime | None = None) -> Runtime:
    # A channel whose config did not change keeps its adaptor across a reload, and with it
    # its process slots and counters.
    redaction.install(config)  # this config's secrets join the process-wide redactor
    kept = {cfg.name: (cfg, adaptor) for cfg, adaptor in previous.channels} if previous else {}
    channels = [
        (ch, kept[ch.name][1] if ch.name in kept and kept[ch.name][0] == ch else make_adaptor(ch, session))
        for ch in config.channels
    ]
    return Runtime(config, KeyIndex(config.tenants), Router(channels, config.aliases), channels)
