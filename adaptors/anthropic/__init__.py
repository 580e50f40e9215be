"""Channel type `anthropic`: the Anthropic Messages API."""
from relay_config.schema import AnthropicChannel

from ..kernel.registry import ChannelType
from .adaptor import AnthropicAdaptor

CHANNEL_TYPE = ChannelType("anthropic", AnthropicChannel, AnthropicAdaptor)  # the `relay.adaptors` entry point

__all__ = ["CHANNEL_TYPE", "AnthropicAdaptor"]
