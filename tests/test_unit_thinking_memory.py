"""The thinking memory: tenant-isolated, bounded, expiring (injected clock)."""
from __future__ import annotations

from relay.thinking_memory import LocalKV, ThinkingMemory

TURN = [{"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_remembered_block_comes_back_for_its_tenant_only():
    memory = ThinkingMemory(LocalKV())
    await memory.remember("acme", ["call_1"], "tok.")
    restored = await memory.restore("acme", TURN)
    assert restored is not None and restored[1]["reasoning_signature"] == "tok." and "reasoning_signature" not in TURN[1]
    assert await memory.restore("globex", TURN) is None


async def test_a_turn_that_carries_its_signature_is_left_alone():
    memory = ThinkingMemory(LocalKV())
    await memory.remember("acme", ["call_1"], "tok.")
    sent = [TURN[0], {**TURN[1], "reasoning_signature": "own."}, TURN[2]]
    assert await memory.restore("acme", sent) is None


async def test_entries_expire_and_the_oldest_go_first():
    clock = Clock()
    memory = ThinkingMemory(LocalKV(max_entries=2, clock=clock), ttl=60)
    await memory.remember("acme", ["call_1"], "one.")
    clock.now = 61
    assert await memory.restore("acme", TURN) is None
    kv = LocalKV(max_entries=2, clock=clock)
    for i in range(3):
        await kv.put(f"k{i}", "v", 60)
    assert [await kv.get(f"k{i}") for i in range(3)] == [None, "v", "v"]


async def test_memory_is_bounded_in_bytes():
    kv = LocalKV(max_bytes=10)
    await kv.put("a", "x" * 6, 60)
    await kv.put("b", "y" * 6, 60)
    assert await kv.get("a") is None and await kv.get("b") == "y" * 6
