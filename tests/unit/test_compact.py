"""Compaction, the pure part: the summary request from a conversation, the compacted items,
and the bridge reading Relay's compaction items back (and refusing anyone else's)."""
from __future__ import annotations

import base64

import pytest

from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.responses import to_chat
from relay_adaptors.responses.compact import (
    COMPACT_INSTRUCTIONS,
    SUMMARY_INTRO,
    compacted_output,
    compacted_response,
    decode_summary,
    encode_summary,
    kept_user_messages,
    summary_of,
    summary_request,
    transcript,
)

from ..spec import validate

SUMMARY = "Fixed the parser in src/façade.py; tests pass. Next: 🎉 release v1.2."
HISTORY = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the parser"},
                                                   {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
    {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"pytest"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "1 failed"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed."}]},
    {"role": "user", "content": "now release it"},
]


def test_the_summary_survives_the_round_trip_exactly():
    encrypted = encode_summary(SUMMARY)
    assert encrypted.startswith("relay-compaction-v1:") and SUMMARY not in encrypted
    assert decode_summary(encrypted) == SUMMARY


@pytest.mark.parametrize("foreign", [
    "gAAAAABpM2Vh0ExAMPLEopaqueOpenAIblob==",  # not ours at all
    "relay-compaction-v1:not base64!",
    "relay-compaction-v1:" + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
])
def test_content_relay_did_not_make_is_not_read(foreign):
    assert decode_summary(foreign) is None


def test_the_transcript_shows_every_turn_as_text():
    chat = to_chat({"model": "m", "input": HISTORY, "instructions": "You are Codex."}).chat
    text = transcript(chat["messages"])
    assert text == (
        "[system]\nYou are Codex.\n\n[system]\nBe terse.\n\n[user]\nfix the parser\n[image]\n\n"
        '[assistant calls tool exec_command (call_1)]\n{"cmd":"pytest"}\n\n[tool result call_1]\n1 failed\n\n'
        "[assistant]\nFixed.\n\n[user]\nnow release it"
    )


def test_the_summary_request_is_plain_text_that_any_upstream_takes():
    chat = summary_request("gpt-x", to_chat({"model": "m", "input": HISTORY}).chat["messages"])
    assert chat["model"] == "gpt-x" and set(chat) == {"model", "messages"}  # no tools, no stream, no limits of ours
    system, user = chat["messages"]
    assert system == {"role": "system", "content": COMPACT_INSTRUCTIONS}
    assert user["role"] == "user" and user["content"].startswith("<transcript>\n[system]\nBe terse.")
    assert "[tool result call_1]\n1 failed" in user["content"]


def test_the_output_keeps_the_user_messages_then_the_compaction_item():
    out = compacted_output(HISTORY, SUMMARY)
    for item in out:
        validate("ItemField", item)
    assert [i["type"] for i in out] == ["message", "message", "compaction"]
    assert [i["content"][0]["text"] for i in out[:2]] == ["fix the parser", "now release it"]  # images left to the summary
    assert all(i["role"] == "user" and i["status"] == "completed" and i["id"].startswith("msg_") for i in out[:2])
    assert out[2]["id"].startswith("cmp_") and decode_summary(out[2]["encrypted_content"]) == SUMMARY


def test_a_string_input_is_one_user_message():
    assert kept_user_messages("just this") == ["just this"]


def test_the_newest_user_messages_are_kept_within_the_budget():
    items = [{"role": "user", "content": t} for t in ("a" * 400, "b" * 40, "c" * 40)]  # 100, 10 and 10 tokens
    assert kept_user_messages(items, budget=120) == ["a" * 400, "b" * 40, "c" * 40]
    assert kept_user_messages(items, budget=20) == ["b" * 40, "c" * 40]
    # the one that does not fit is cut to what is left, its start and end kept; older ones go
    assert kept_user_messages(items, budget=25) == ["a" * 10 + "…[380 characters cut]…" + "a" * 10, "b" * 40, "c" * 40]
    assert kept_user_messages([*items, {"role": "user", "content": "0123456789xyz"}], budget=2) == ["0123…[5 characters cut]…9xyz"]


def test_the_compacted_response_is_the_spec_object():
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13}
    body = compacted_response(compacted_output(HISTORY, SUMMARY), usage, 1_700_000_000)
    validate("CompactResource", body)
    assert body["object"] == "response.compaction" and body["id"].startswith("resp_")


def test_the_bridge_reads_relay_compaction_items_back_as_the_summary():
    out = compacted_output(HISTORY, SUMMARY)
    msgs = to_chat({"model": "m", "input": [*out, {"role": "user", "content": "go on"}]}).chat["messages"]
    assert msgs == [
        {"role": "user", "content": "fix the parser"},
        {"role": "user", "content": "now release it"},
        {"role": "user", "content": SUMMARY_INTRO + SUMMARY},
        {"role": "user", "content": "go on"},
    ]


@pytest.mark.parametrize(("item", "detail"), [
    ({"type": "compaction", "encrypted_content": "gAAAAABopaque"}, "not made by Relay"),
    ({"type": "compaction", "id": "cmp_1"}, "Missing required parameter"),
])
def test_the_bridge_names_a_compaction_item_it_cannot_read(item, detail):
    with pytest.raises(RelayError) as e:
        to_chat({"model": "m", "input": [{"role": "user", "content": "hi"}, item]})
    assert e.value.status == 400 and e.value.param == "input[1].encrypted_content" and detail in e.value.message


def test_the_summary_is_the_answer_text():
    assert summary_of({"choices": [{"message": {"content": "  notes \n"}}]}) == "notes"
    assert summary_of({"choices": [{"message": {"content": None, "tool_calls": []}}]}) == ""
    assert summary_of({}) == ""


def test_a_native_upstream_reads_relays_compaction_as_the_summary_message():
    from relay_adaptors.responses.compact import encode_summary, readable_by_upstream

    theirs = {"type": "compaction", "encrypted_content": "gAAAA-opaque"}
    ours = {"type": "compaction", "id": "cmp_1", "encrypted_content": encode_summary("We agreed on tea.")}
    user = {"role": "user", "content": "and now?"}
    got = readable_by_upstream([ours, theirs, user])
    assert got[0]["type"] == "message" and got[0]["role"] == "user" and got[0]["content"].endswith("We agreed on tea.")
    assert got[1:] == [theirs, user]
    untouched = [user]
    assert readable_by_upstream(untouched) is untouched and readable_by_upstream("hi") == "hi"
