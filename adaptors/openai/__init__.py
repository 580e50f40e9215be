from .adaptor import OpenAIAdaptor

__all__ = ["OpenAIAdaptor"]
