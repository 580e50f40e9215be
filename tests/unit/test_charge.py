"""What a call costs the tenant: the pure rule the lifecycle settles with."""
from __future__ import annotations

import pytest

from relay.outcome import Charge, StreamOutcome, charge

USAGE = {"prompt_tokens": 30, "completion_tokens": 6, "prompt_tokens_details": {"cached_tokens": 10},
         "completion_tokens_details": {"reasoning_tokens": 2}}


def never() -> int:
    raise AssertionError("the estimate must not be computed")


def test_reported_usage_wins_over_any_estimate():
    assert charge(USAGE, None, 200, False, never) == Charge(30, 10, 6, 2, False)
    streamed = StreamOutcome(usage=USAGE, output_chars=400)
    assert charge(None, streamed, 499, True, never) == Charge(30, 10, 6, 2, False)


def test_a_cut_stream_without_usage_is_estimated_from_what_was_relayed():
    out = StreamOutcome()
    out.produced(41)
    assert charge(None, out, 499, True, lambda: 12) == Charge(12, 0, 11, 0, True)


def test_a_call_the_upstream_never_saw_costs_nothing():
    assert charge(None, None, 429, False, never) == Charge()
    assert charge(None, StreamOutcome(), 502, False, never) == Charge()


def test_a_call_cut_after_the_upstream_had_the_prompt_pays_the_prompt():
    assert charge(None, StreamOutcome(), 499, True, lambda: 9) == Charge(9, 0, 0, 0, True)


@pytest.mark.parametrize("bad", [-5, "12", None, True, float("nan") * 0 - 1, [3]])
def test_hostile_usage_numbers_count_as_zero(bad):
    c = charge({"prompt_tokens": bad, "completion_tokens": 3}, None, 200, False, never)
    assert c.input == 0 and c.output == 3 and c.total == 3


@pytest.mark.parametrize("delta, chars", [
    ({"content": "abc"}, 3),
    ({"role": "assistant", "content": ""}, 0),
    ({"content": None, "tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}, 4),
    ({"content": "ab", "reasoning_content": "cd"}, 4),
    ({"content": 5, "reasoning_content": "cd"}, 2),  # an upstream's value of another type counts nothing
    ({"content": ["ab"]}, 0),
    ({"refusal": "I can't"}, 7),  # a refusal is generated text too
    ({"tool_calls": [{"index": 0, "function": {"arguments": 7}}]}, 0),
])
def test_relayed_text_is_counted_by_its_length(delta, chars):
    outcome = StreamOutcome()
    outcome.saw({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    assert outcome.output_chars == chars
