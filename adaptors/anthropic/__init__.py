from .adaptor import AnthropicAdaptor

__all__ = ["AnthropicAdaptor"]
