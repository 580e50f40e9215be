"""The thinking memory: tenant-isolated, expiring, and a store failure is a miss, not an error."""
from __future__ import annotations

from relay.store import MemoryStore, StoreError
from relay.thinking_memory import ThinkingMemory

TURN = [{"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}]


async def test_a_remembered_block_comes_back_for_its_tenant_only():
    memory = ThinkingMemory(MemoryStore())
    await memory.remember("acme", ["call_1"], "tok.")
    restored = await memory.restore("acme", TURN)
    assert restored is not None and restored[1]["reasoning_signature"] == "tok." and "reasoning_signature" not in TURN[1]
    assert await memory.restore("globex", TURN) is None


async def test_a_turn_that_carries_its_signature_is_left_alone():
    memory = ThinkingMemory(MemoryStore())
    await memory.remember("acme", ["call_1"], "tok.")
    sent = [TURN[0], {**TURN[1], "reasoning_signature": "own."}, TURN[2]]
    assert await memory.restore("acme", sent) is None


async def test_an_expired_block_is_not_put_back():
    memory = ThinkingMemory(MemoryStore(), ttl=-1)
    await memory.remember("acme", ["call_1"], "tok.")
    assert await memory.restore("acme", TURN) is None


class FailingStore:
    async def kv_get(self, key: str) -> str | None:
        raise StoreError("down")

    async def kv_put(self, key: str, value: str, ttl: float) -> None:
        raise StoreError("down")


async def test_a_failing_store_is_a_miss_not_an_error():
    memory = ThinkingMemory(FailingStore())
    await memory.remember("acme", ["call_1"], "tok.")
    assert await memory.restore("acme", TURN) is None
