"""The pure parts of conversations: pages, id checks, metadata rules, item rebuilding,
`include`, and the per-conversation locks."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.conversation_items import (
    check_conversation_id,
    check_include,
    check_item_id,
    check_metadata,
    check_new_items,
    new_items,
    presented,
)
from relay.conversation_store import Conversations, _Locks
from relay.store import MemoryStore
from relay_adaptors.kernel.errors import RelayError


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"msg_{i}", "type": "message"} for i in range(n)]


def ids(chunk: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in chunk]


def param_of(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, str | None]:
    with pytest.raises(RelayError) as info:
        fn(*args, **kwargs)
    return info.value.status, info.value.param


# --- ids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("good", ["conv_1", "conv_" + "a" * 123, "conv_a-b_C"])
def test_conversation_ids_accepted(good: str) -> None:
    assert check_conversation_id(good, "conversation_id") == good


@pytest.mark.parametrize("bad", ["", "conv_", "conv", "resp_1", "conv_" + "a" * 124, "conv_a b", "conv_\x00", "conv_é", "conv_../x", "conv_1\n"])
def test_conversation_ids_refused(bad: str) -> None:
    assert param_of(check_conversation_id, bad, "conversation") == (400, "conversation")


@pytest.mark.parametrize("bad", ["", "m" * 129, "a b", "a;b", "<x>", "é", "a\n", 5, None, ["msg_1"]])
def test_item_ids_refused(bad: Any) -> None:
    assert param_of(check_item_id, bad, "items[0].id") == (400, "items[0].id")
    assert check_item_id("msg_" + "a" * 124, "x")


# --- metadata -------------------------------------------------------------------------------
def test_metadata_rules() -> None:
    full = {f"k{i}": "v" * 512 for i in range(16)}
    assert check_metadata(full) == full and check_metadata(None) == {} and check_metadata({"k" * 64: ""}) == {"k" * 64: ""}
    assert param_of(check_metadata, {**full, "one": "more"}) == (400, "metadata")
    assert param_of(check_metadata, {"k" * 65: "v"}) == (400, "metadata")
    assert param_of(check_metadata, {"k": "v" * 513}) == (400, "metadata.k")
    assert param_of(check_metadata, {"k": None}) == (400, "metadata.k")
    assert param_of(check_metadata, "k=v") == (400, "metadata")


def test_include_values() -> None:
    assert check_include(["reasoning.encrypted_content", "reasoning.encrypted_content"]) == {"reasoning.encrypted_content"}
    assert param_of(check_include, ["reasoning"]) == (400, "include")


# --- items ----------------------------------------------------------------------------------
def test_items_are_rebuilt_from_the_fields_of_their_type() -> None:
    taken: set[str] = set()
    out = new_items([
        {"role": "user", "content": "hi", "extra": "dropped"},
        {"type": "message", "role": "assistant", "content": "yo", "phase": "final_answer"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "namespace": "ns", "id": "fc_mine"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "r"}], "status": "incomplete"},
        {"type": "reasoning", "summary": [], "encrypted_content": "e", "content": [{"type": "reasoning_text", "text": "t"}]},
    ], "items", taken, reassign_taken=False)
    assert out[0] == {"id": out[0]["id"], "type": "message", "status": "completed", "role": "user",
                      "content": [{"type": "input_text", "text": "hi"}]}
    assert out[1]["content"] == [{"type": "output_text", "text": "yo", "annotations": [], "logprobs": []}] and out[1]["phase"] == "final_answer"
    assert out[2] == {"id": "fc_mine", "type": "function_call", "status": "completed", "call_id": "c1", "name": "f",
                      "arguments": "{}", "namespace": "ns"}
    assert out[3]["status"] == "incomplete" and out[3]["output"] == [{"type": "input_text", "text": "r"}]
    assert out[4]["encrypted_content"] == "e" and out[4]["content"] == [{"type": "reasoning_text", "text": "t"}]
    assert [i["id"][:3] for i in out] == ["msg", "msg", "fc_", "fco", "rs_"]
    assert taken == {i["id"] for i in out} and len(taken) == 5


def test_a_taken_id_is_refused_or_replaced() -> None:
    taken = {"msg_1"}
    assert param_of(new_items, [{"role": "user", "content": "x", "id": "msg_1"}], "items", taken, reassign_taken=False) == (400, "items[0].id")
    out = new_items([{"role": "user", "content": "x", "id": "msg_1"}, {"role": "user", "content": "x", "id": "<bad>"},
                     {"role": "user", "content": "x", "id": "msg_2"}], "conversation", taken, reassign_taken=True)
    assert out[0]["id"] not in ("msg_1", "<bad>") and out[1]["id"] != "<bad>" and out[2]["id"] == "msg_2"
    assert taken == {"msg_1", *(i["id"] for i in out)}


def test_new_items_count() -> None:
    assert param_of(check_new_items, []) == (400, "items")
    assert param_of(check_new_items, [{}] * 21) == (400, "items")
    assert param_of(check_new_items, {"role": "user"}) == (400, "items")
    assert len(check_new_items([{}] * 20)) == 20


def test_include_hides_what_openai_hides() -> None:
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "e"}
    assert "encrypted_content" not in presented(reasoning, set())
    assert presented(reasoning, {"reasoning.encrypted_content"}) is reasoning
    message = {"id": "msg_1", "type": "message", "role": "user", "status": "completed", "content": [
        {"type": "input_image", "image_url": "data:x", "detail": "auto"},
        {"type": "output_text", "text": "t", "annotations": [], "logprobs": [{"token": "t"}]}]}
    hidden = presented(message, set())
    assert hidden["content"][0]["image_url"] is None and hidden["content"][1]["logprobs"] == []
    assert message["content"][0]["image_url"] == "data:x"  # the stored item is not changed
    assert presented(message, {"message.input_image.image_url", "message.output_text.logprobs"}) is message


# --- locks and the store class ---------------------------------------------------------------
async def test_locks_serialize_one_key_and_are_forgotten() -> None:
    locks = _Locks()
    order: list[str] = []

    async def hold(name: str, key: tuple[str, str]) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(0)
            order.append(f"{name}-")

    await asyncio.gather(hold("a", ("t", "c")), hold("b", ("t", "c")), hold("x", ("t", "other")))
    assert order.index("a-") < order.index("b+")
    assert order.index("x+") < order.index("a-")  # another conversation does not wait
    assert len(locks) == 0


async def test_the_size_cap_is_checked_before_anything_is_written() -> None:
    store = MemoryStore()
    convs = Conversations(store, retention=60, max_bytes=1024)
    doc = await convs.create("acme", {}, [{"role": "user", "content": "a" * 500}])
    with pytest.raises(RelayError) as info:
        await convs.append("acme", doc["id"], [{"role": "user", "content": "é" * 300}])  # 600 bytes, 300 characters
    assert (info.value.status, info.value.param, info.value.code) == (413, "conversation", "conversation_too_large")
    assert len(await convs.items("acme", doc["id"])) == 1
    with pytest.raises(RelayError) as info:
        await convs.create("acme", {}, [{"role": "user", "content": "a" * 2000}])
    assert (info.value.status, info.value.param) == (413, "items")
    assert len(store.docs["acme"]) == 1


def test_retention_and_size_cap_in_the_config() -> None:
    from pydantic import ValidationError

    from relay_config.schema import ResponsesConfig

    default = ResponsesConfig()
    assert (default.retention, default.max_stored_bytes) == (30 * 86400, 16 << 20)
    assert ResponsesConfig(retention=60, max_stored_bytes=4096).retention == 60
    for bad in ({"retention": 0}, {"retention": -1}, {"max_stored_bytes": 10}, {"max_stored_bytes": "big"}):
        with pytest.raises(ValidationError):
            ResponsesConfig(**bad)


def test_annotations_and_logprobs_are_checked_and_rebuilt() -> None:
    citation = {"type": "url_citation", "url": "https://x", "start_index": 0, "end_index": 3, "title": "X", "extra": "dropped"}
    logprob = {"token": "a", "logprob": -1, "bytes": [97], "top_logprobs": [{"token": "b", "logprob": -0.5, "bytes": [98], "x": 1}]}
    part = {"type": "output_text", "text": "abc", "annotations": [citation], "logprobs": [logprob]}
    out = new_items([{"role": "assistant", "content": [part]}], "items", set(), reassign_taken=False)[0]["content"][0]
    assert out["annotations"] == [{k: v for k, v in citation.items() if k != "extra"}]
    assert out["logprobs"] == [{**logprob, "top_logprobs": [{"token": "b", "logprob": -0.5, "bytes": [98]}]}]
    for bad, param in (
        ({"annotations": [{"type": "url_citation", "url": "https://x"}]}, "items[0].content[0].annotations[0].start_index"),
        ({"annotations": [{"type": "footnote"}]}, "items[0].content[0].annotations[0].type"),
        ({"annotations": "none"}, "items[0].content[0].annotations"),
        ({"logprobs": [{"token": "a"}]}, "items[0].content[0].logprobs[0].logprob"),
        ({"logprobs": [{"token": "a", "logprob": True, "bytes": []}]}, "items[0].content[0].logprobs[0].logprob"),
        ({"logprobs": [{"token": "a", "logprob": 0, "bytes": ["x"]}]}, "items[0].content[0].logprobs[0].bytes"),
        ({"logprobs": [{"token": "a", "logprob": 0, "bytes": [], "top_logprobs": [{}]}]},
         "items[0].content[0].logprobs[0].top_logprobs[0].token"),
    ):
        content = [{"type": "output_text", "text": "abc", **bad}]
        assert param_of(new_items, [{"role": "assistant", "content": content}], "items", set(), reassign_taken=False) == (400, param)
