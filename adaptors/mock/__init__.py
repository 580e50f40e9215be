from .adaptor import MockAdaptor

__all__ = ["MockAdaptor"]
