"""Identifiers in the shapes OpenAI clients expect (`chatcmpl-…`, `resp_…`, `msg_…`, `fc_…`, `rs_…`)."""
from __future__ import annotations

import os


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def completion_id() -> str:
    return new_id("chatcmpl-")
