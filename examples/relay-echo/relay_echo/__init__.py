"""Relay channel type `echo`. The entry point `relay.adaptors: echo` names CHANNEL_TYPE."""
from relay_adaptors.kernel.registry import ChannelType

from .adaptor import EchoAdaptor
from .settings import EchoChannel

CHANNEL_TYPE = ChannelType("echo", EchoChannel, EchoAdaptor)

__all__ = ["CHANNEL_TYPE", "EchoAdaptor", "EchoChannel"]
