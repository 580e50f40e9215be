"""The pure parts of stored responses: listed item shapes, cursor pages, lost background runs."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.stateful.background import STALE_AFTER, lost
from relay.stateful.pages import page
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.responses.items import replayed, stored_input

ITEMS = [{"id": f"i{n}"} for n in range(5)]


def ids(listing):
    return [i["id"] for i in listing["data"]]


def test_a_string_input_is_one_user_message_with_an_id_and_parts():
    [item] = stored_input("hi")
    assert item["id"].startswith("msg_") and item["status"] == "completed"
    assert item | {"id": "x"} == {"id": "x", "type": "message", "role": "user", "status": "completed",
                                  "content": [{"type": "input_text", "text": "hi"}]}


def test_items_keep_their_ids_and_an_assistant_string_becomes_output_text():
    got = stored_input([{"role": "assistant", "content": "ok"}, {"type": "function_call", "call_id": "c", "name": "f",
                        "arguments": "{}", "id": "fc_1"}, {"type": "function_call_output", "call_id": "c", "output": "x"},
                        {"type": "reasoning", "encrypted_content": "e"}])
    assert got[0]["content"] == [{"type": "output_text", "text": "ok", "annotations": [], "logprobs": []}]
    assert got[1]["id"] == "fc_1" and got[2]["id"].startswith("fco_") and got[3]["id"].startswith("rs_")
    assert got[3]["summary"] == []
    back = replayed(got)
    assert "id" not in back[0] and "status" not in back[2] and back[1]["id"] == "fc_1"  # upstream items keep theirs


@pytest.mark.parametrize("query, want, more", [
    ({}, ["i4", "i3", "i2", "i1", "i0"], False),
    ({"order": "asc", "limit": "2"}, ["i0", "i1"], True),
    ({"order": "asc", "after": "i1", "limit": "2"}, ["i2", "i3"], True),
    ({"order": "asc", "after": "i3"}, ["i4"], False),
    ({"order": "desc", "after": "i3"}, ["i2", "i1", "i0"], False),
    ({"order": "asc", "before": "i3", "limit": "2"}, ["i1", "i2"], True),
    ({"order": "asc", "after": "i0", "before": "i3"}, ["i1", "i2"], False),
])
def test_pages_follow_the_cursor_in_either_order(query, want, more):
    got = page(ITEMS, query)
    assert ids(got) == want and got["has_more"] is more
    assert (got["first_id"], got["last_id"]) == (want[0], want[-1])


@pytest.mark.parametrize("query, param", [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "-1"}, "limit"),
                                          ({"order": "up"}, "order"), ({"after": "nope"}, "after"), ({"before": "x" * 500}, "before")])
def test_a_bad_page_query_is_a_400_naming_it(query, param):
    with pytest.raises(RelayError) as e:
        page(ITEMS, query)
    assert e.value.status == 400 and e.value.param == param and len(e.value.message) < 200


def test_an_empty_page_still_has_string_cursors():
    assert page([], {}) == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}


def test_a_run_is_lost_once_its_beat_is_stale():
    assert not lost("1000.0", 1000.0 + STALE_AFTER - 0.1)
    assert lost("1000.0", 1000.0 + STALE_AFTER)
    assert lost(None, 0.0) and lost("garbage", 0.0)


@given(n=st.integers(0, 40), limit=st.integers(1, 100), order=st.sampled_from(["asc", "desc"]))
def test_walking_the_pages_yields_every_item_once_in_order(n, limit, order):
    items = [{"id": f"i{k}"} for k in range(n)]
    seen, query = [], {"limit": str(limit), "order": order}
    while True:
        listing = page(items, query)
        seen += ids(listing)
        if not listing["has_more"]:
            break
        assert listing["data"], "has_more with an empty page would never end"
        query = {**query, "after": listing["last_id"]}
    assert seen == [i["id"] for i in (items if order == "asc" else items[::-1])]


def test_listed_ids_are_distinct_so_a_cursor_names_one_item():
    got = stored_input([{"role": "user", "content": "a", "id": "x"}, {"role": "user", "content": "b", "id": "x"},
                        {"role": "user", "content": "c", "id": "h"}], taken={"h"})
    assert got[0]["id"] == "x" and len({i["id"] for i in got} | {"h"}) == 4
    walked, query = [], {"order": "asc", "limit": "1"}
    for _ in range(10):  # the walk ends: every cursor is one item
        listing = page(got, query)
        walked += ids(listing)
        if not listing["has_more"]:
            break
        query = {**query, "after": listing["last_id"]}
    assert walked == [i["id"] for i in got]
