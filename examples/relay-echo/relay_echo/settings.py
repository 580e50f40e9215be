"""The keys a `type: echo` channel may have. Relay validates them with the same errors
(file, line, YAML path) as its own channels: unknown keys are refused, as everywhere."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from relay_config.schema import ChannelBase


class EchoChannel(ChannelBase):
    # `name`, `models`, `timeout`, `priority` and `weight` come from ChannelBase.
    type: Literal["echo"]
    base_url: str = Field(min_length=1)  # where the Echo server listens, e.g. http://127.0.0.1:7000
    api_key: str | None = None  # sent as the Echo-Key header; scrubbed from upstream messages
    max_words: int = Field(200, ge=1, le=100_000)  # the answer's length when a request sets no max_tokens
