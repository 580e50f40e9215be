"""Identifiers in the shapes OpenAI clients expect (`chatcmpl-…`, `resp_…`, `msg_…`, `fc_…`, `rs_…`).

96 random bits from a generator seeded once from the OS (and again in every forked worker),
so an id costs no syscall. Ids must be unique, not secret: nothing is found by id alone,
every lookup is also keyed by the tenant.
"""
from __future__ import annotations

import os
import random

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)  # workers must not share a sequence


def new_id(prefix: str) -> str:
    return f"{prefix}{_rng.getrandbits(96):024x}"


def completion_id() -> str:
    return new_id("chatcmpl-")
