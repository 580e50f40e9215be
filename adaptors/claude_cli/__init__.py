"""Channel type `claude_cli`: the Claude Code CLI, one process per request."""
from relay_config.schema import ClaudeCliChannel

from ..kernel.registry import ChannelType
from .adaptor import ClaudeCliAdaptor

# The `relay.adaptors` entry point. No HTTP: the shared session goes unused.
CHANNEL_TYPE = ChannelType("claude_cli", ClaudeCliChannel, lambda cfg, _session: ClaudeCliAdaptor(cfg))

__all__ = ["CHANNEL_TYPE", "ClaudeCliAdaptor"]
