"""Token usage between the three wire shapes (chat, Responses, Anthropic Messages), through
one typed value.

The shapes disagree on what "input" means: OpenAI's `prompt_tokens` / `input_tokens` include
cached tokens, Anthropic's `input_tokens` exclude both cache reads and cache writes. `Usage`
always holds the OpenAI meaning (every prompt token), so each shape converts once, here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# No call counts anywhere near 2**40 tokens: past it a count is an upstream's nonsense, and it
# would overflow the stores' 64-bit counters once summed.
MAX_COUNT = 2**40


def _int(value: object) -> int:
    """A count as reported, or 0 for anything that is not a finite non-negative number: an
    upstream's nonsense must not become a negative (or infinite) charge."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        return 0
    return min(int(value), MAX_COUNT)


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0  # every prompt token, cached ones included
    output: int = 0  # every generated token, reasoning included
    cached: int = 0  # prompt tokens read from a cache
    reasoning: int = 0  # of `output`, the tokens spent thinking
    # Prompt tokens written to a cache; None when the upstream does not report it (OpenAI),
    # so the chat shape only names it when it is known.
    cache_write: int | None = None

    @property
    def total(self) -> int:
        return self.input + self.output

    # --- from the wire ----------------------------------------------------------------
    @classmethod
    def from_chat(cls, u: Mapping[str, Any]) -> Usage:
        prompt = _details(u, "prompt_tokens_details")
        write = prompt.get("cache_creation_tokens")
        return cls(_int(u.get("prompt_tokens")), _int(u.get("completion_tokens")), _int(prompt.get("cached_tokens")),
                   _int(_details(u, "completion_tokens_details").get("reasoning_tokens")),
                   None if write is None else _int(write))

    @classmethod
    def from_responses(cls, u: Mapping[str, Any]) -> Usage:
        inp = _details(u, "input_tokens_details")
        write = inp.get("cache_write_tokens")
        return cls(_int(u.get("input_tokens")), _int(u.get("output_tokens")), _int(inp.get("cached_tokens")),
                   _int(_details(u, "output_tokens_details").get("reasoning_tokens")),
                   None if write is None else _int(write))

    @classmethod
    def from_anthropic(cls, u: Mapping[str, Any]) -> Usage:
        read = _int(u.get("cache_read_input_tokens"))
        write = _int(u.get("cache_creation_input_tokens"))
        return cls(_int(u.get("input_tokens")) + read + write, _int(u.get("output_tokens")), read, 0, write)

    # --- to the wire ------------------------------------------------------------------
    def chat(self) -> dict[str, Any]:
        """CompletionUsage."""
        prompt: dict[str, int] = {"cached_tokens": self.cached}
        if self.cache_write is not None:
            prompt["cache_creation_tokens"] = self.cache_write
        return {
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.total,
            "prompt_tokens_details": prompt,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def responses(self) -> dict[str, Any]:
        """ResponseUsage."""
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": self.cache_write or 0},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total,
        }

    def anthropic(self) -> dict[str, Any]:
        """Anthropic's Usage: input_tokens without the cache reads and writes. The fields Relay
        has no value for are null, as the Messages API sends them."""
        write = self.cache_write or 0
        return {
            "input_tokens": max(0, self.input - self.cached - write),
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": write,
            "output_tokens": self.output,
            **dict.fromkeys(("cache_creation", "inference_geo", "output_tokens_details", "server_tool_use", "service_tier")),
        }
