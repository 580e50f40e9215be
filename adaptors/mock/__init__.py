"""Channel type `mock`: answers locally, for demos and load tests of Relay itself."""
from relay_config.schema import MockChannel

from ..kernel.registry import ChannelType
from .adaptor import MockAdaptor

# The `relay.adaptors` entry point. No network: the shared session goes unused.
CHANNEL_TYPE = ChannelType("mock", MockChannel, lambda cfg, _session: MockAdaptor(cfg))

__all__ = ["CHANNEL_TYPE", "MockAdaptor"]
