"""Channel type `openai`: any OpenAI-compatible server."""
from relay_config.schema import OpenAIChannel

from ..kernel.registry import ChannelType
from .adaptor import OpenAIAdaptor

CHANNEL_TYPE = ChannelType("openai", OpenAIChannel, OpenAIAdaptor)  # the `relay.adaptors` entry point

__all__ = ["CHANNEL_TYPE", "OpenAIAdaptor"]
