"""A non-streaming chat completion -> an Anthropic Message (pure).

The completion is replayed through the stream machine, so a Message looks the same whether
the client streamed or not.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..kernel.ids import new_id
from ..responses.complete import completion_chunks
from .stream import MessagesStream


def completion_to_message(completion: dict[str, Any], model: str, stop_sequences: list[str] | None = None,
                          make_id: Callable[[str], str] = new_id) -> dict[str, Any]:
    machine = MessagesStream(model, stop_sequences, make_id)
    machine.start()
    for chunk in completion_chunks(completion):
        machine.feed(chunk)
    machine.finish()
    assert machine.message is not None
    return machine.message
