"""Relay: a multi-tenant LLM API gateway."""

__version__ = "0.1.0"
