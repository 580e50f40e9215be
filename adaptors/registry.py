"""Channel config -> adaptor instance. The one place that knows every channel type."""
from __future__ import annotations

from typing import assert_never

import aiohttp

from relay_config.schema import AnthropicChannel, ChannelConfig, ClaudeCliChannel, MockChannel, OpenAIChannel

from .anthropic import AnthropicAdaptor
from .base import Adaptor
from .claude_cli import ClaudeCliAdaptor
from .mock import MockAdaptor
from .openai import OpenAIAdaptor


def make_adaptor(cfg: ChannelConfig, session: aiohttp.ClientSession) -> Adaptor:
    match cfg:
        case OpenAIChannel():
            return OpenAIAdaptor(cfg, session)
        case AnthropicChannel():
            return AnthropicAdaptor(cfg, session)
        case ClaudeCliChannel():
            return ClaudeCliAdaptor(cfg)
        case MockChannel():
            return MockAdaptor(cfg)
        case _:
            assert_never(cfg)
