"""Thinking blocks <-> an opaque token clients carry between turns.

Anthropic requires thinking blocks to come back exactly as it sent them (text and signature,
or redacted data) when a conversation continues after tool use. Clients cannot hold them in
chat or Responses shapes, so each block travels as a token: base64url(JSON of the block)
followed by '.', in `reasoning_signature` (chat) or a reasoning item's `encrypted_content`
(Responses). Tokens concatenate, so one string may carry several blocks.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ..kernel import jsonfast


def encode_block(block: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(jsonfast.dumps(block)).decode().rstrip("=") + "."


def decode_blocks(token: str) -> list[dict[str, Any]]:
    """The thinking blocks in a token string; pieces that are not ours are skipped (a client
    may send back reasoning produced by another provider)."""
    blocks = []
    for piece in token.split("."):
        if not piece:
            continue
        try:
            block = jsonfast.loads(base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4)))
        except (binascii.Error, ValueError):
            continue
        if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
            blocks.append(block)
    return blocks
