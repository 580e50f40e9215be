"""Usage between the chat, Responses and Anthropic shapes, through one typed value."""
from __future__ import annotations

import pytest

from relay_adaptors.kernel import chunks
from relay_adaptors.kernel.usage import Usage

from ..spec import ANTHROPIC, validate

ANTHROPIC_USAGE = {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 7}


def test_anthropic_input_excludes_the_cache_and_openai_prompt_includes_it():
    u = Usage.from_anthropic(ANTHROPIC_USAGE)
    assert u == Usage(input=115, output=7, cached=100, reasoning=0, cache_write=5)
    assert u.chat() == {
        "prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert {k: v for k, v in u.anthropic().items() if v is not None} == ANTHROPIC_USAGE  # and back


def test_chat_to_responses_and_back():
    chat = chunks.usage(30, 12, cached=8, reasoning=4)
    resp = Usage.from_chat(chat).responses()
    assert resp == {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                    "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 42}
    assert Usage.from_responses(resp).chat() == {**chat, "prompt_tokens_details": {"cached_tokens": 8, "cache_creation_tokens": 0}}
    assert Usage.from_chat(chat).chat() == chat  # an OpenAI usage names no cache writes


def test_cache_writes_survive_chat_to_responses():
    chat = Usage.from_anthropic(ANTHROPIC_USAGE).chat()
    assert Usage.from_chat(chat).responses()["input_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 5}


@pytest.mark.parametrize("raw", [{}, {"prompt_tokens": None, "prompt_tokens_details": None}, {"prompt_tokens": -3, "completion_tokens": "7"},
                                 {"prompt_tokens": True}, {"prompt_tokens": float("inf"), "completion_tokens": float("nan")},
                                 {"prompt_tokens_details": {"cached_tokens": -1}}])
def test_missing_or_nonsense_counts_read_as_zero(raw):
    assert Usage.from_chat(raw) == Usage()
    assert Usage.from_responses({"input_tokens_details": None}) == Usage()
    assert Usage.from_anthropic({"cache_read_input_tokens": None}) == Usage(cache_write=0)


def test_whole_floats_count():
    assert Usage.from_chat({"prompt_tokens": 12.0, "completion_tokens": 3}) == Usage(12, 3)


def test_anthropic_input_never_goes_negative():
    # OpenAI-side numbers where the cached count exceeds the prompt (a misreporting upstream).
    assert Usage(input=5, cached=9).anthropic()["input_tokens"] == 0


def test_every_shape_is_valid_against_the_official_schemas():
    for u in (Usage(), Usage.from_anthropic(ANTHROPIC_USAGE), Usage(30, 12, 8, 4)):
        validate("CompletionUsage", u.chat())
        validate("ResponseUsage", u.responses())
        ANTHROPIC.validate("Usage", u.anthropic())


def test_absurd_counts_are_capped_below_what_the_stores_can_sum():
    """An upstream reporting 1e20 tokens: past 2**40 a count is nonsense, and an integer past
    64 bits stops the ledger's writers (orjson, SQLite and Redis all refuse it)."""
    from relay_adaptors.kernel.usage import MAX_COUNT

    use = Usage.from_chat({"prompt_tokens": 1e20, "completion_tokens": 10**30, "total_tokens": 10**30})
    assert (use.input, use.output) == (MAX_COUNT, MAX_COUNT)
    assert MAX_COUNT * 2**20 < 2**63  # a million such rows still sum within a 64-bit counter
