from .adaptor import ClaudeCliAdaptor

__all__ = ["ClaudeCliAdaptor"]
