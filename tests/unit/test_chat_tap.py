"""The chat byte relay (relay.chat_tap) against the parse-and-encode path it replaces: for the
recorded OpenAI streams, in any chunking, LF or CRLF, compact or spaced JSON, with and without
the client's usage chunk, the client gets the same frames and the ledger the same facts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.chat_tap import ChatTap
from relay.chat_writer import ChatFrames
from relay.outcome import StreamOutcome
from relay_adaptors.kernel.base import RawUpstream
from relay_adaptors.kernel.errors import RelayError, upstream_timeout
from relay_adaptors.kernel.sse import DONE
from relay_adaptors.openai.codec import ChatStreamConverter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
STREAMS = {p.stem: p.read_bytes() for p in sorted(FIXTURES.glob("chat-*.sse"))}
MODEL = "client-name"


def spaced(data: bytes) -> bytes:
    """The same stream as a server using Python's default JSON separators writes it."""
    out = []
    for frame in data.split(b"\n\n"):
        if frame.startswith(b"data: {"):
            frame = b"data: " + json.dumps(json.loads(frame[6:])).encode()
        out.append(frame)
    return b"\n\n".join(out)


VARIANTS = {"as recorded": lambda d: d, "crlf": lambda d: d.replace(b"\n", b"\r\n"), "spaced json": spaced}


def raw() -> RawUpstream:
    async def nothing():  # the tap never reads the chunks itself
        yield b""

    return RawUpstream(200, "text/event-stream", nothing())


def through_tap(pieces: list[bytes], include_usage: bool, failure: RelayError | None = None) -> tuple[bytes, StreamOutcome]:
    outcome = StreamOutcome()
    upstream = raw()
    tap = ChatTap(outcome, MODEL, include_usage, "ch", upstream)
    out = b"".join(tap.feed(p) for p in pieces)
    upstream.failure = failure
    return out + tap.end(), outcome


def through_converter(data: bytes, include_usage: bool, failure: RelayError | None = None) -> tuple[bytes, StreamOutcome]:
    """What the converting path writes (relay.chat_writer.write_chat_stream's frames)."""
    outcome = StreamOutcome()
    conv = ChatStreamConverter("ch")
    items = conv.feed(data)
    items += [failure] if failure is not None and not conv.done else conv.close()
    out = ChatFrames(include_usage, outcome, MODEL)(items)
    return out + (DONE if outcome.error is None else b""), outcome


def frames(out: bytes) -> list:
    text = out.replace(b"\r\n", b"\n").decode()
    return [json.loads(f[6:]) if f.startswith("data: {") else f for f in text.split("\n\n") if f and not f.startswith(":")]


def chunked(data: bytes, points: list[int]) -> list[bytes]:
    at = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(STREAMS)), st.sampled_from(sorted(VARIANTS)), st.booleans(),
       st.lists(st.integers(min_value=0, max_value=5000), max_size=6))
def test_the_byte_relay_gives_what_the_converting_path_gives(name, variant, include_usage, points):
    data = VARIANTS[variant](STREAMS[name])
    got, seen = through_tap(chunked(data, points), include_usage)
    want, expected = through_converter(data, include_usage)
    assert frames(got) == frames(want)
    assert seen.usage == expected.usage
    assert (seen.error is None) == (expected.error is None)
    if expected.error is not None:
        assert seen.error.body() == expected.error.body()
    assert (seen.first_chunk_at is None) == (expected.first_chunk_at is None)


@pytest.mark.parametrize("include_usage", [False, True])
def test_every_chunk_names_the_client_model_and_usage_reaches_only_who_asked(include_usage):
    got, outcome = through_tap([STREAMS["chat-text"]], include_usage)
    chunks = [f for f in frames(got) if isinstance(f, dict)]
    assert chunks and all(c["model"] == MODEL for c in chunks)
    assert outcome.usage and outcome.usage["total_tokens"] > 0
    assert any("usage" in c for c in chunks) == include_usage
    assert got.endswith(b"data: [DONE]\n\n")


def test_a_stream_cut_before_done_ends_with_the_reason_in_band():
    data = STREAMS["chat-text"]
    cut = data[: data.index(b"data: [DONE]")]
    got, outcome = through_tap([cut], False)
    assert frames(got)[-1]["error"]["code"] == "bad_upstream_response" and outcome.error is not None
    timeout = upstream_timeout("ch", "idle")
    got, outcome = through_tap([cut], False, failure=timeout)
    assert frames(got)[-1]["error"]["code"] == "upstream_timeout" and outcome.error is timeout


def test_a_client_that_left_adds_nothing_and_blames_no_upstream():
    outcome = StreamOutcome()
    tap = ChatTap(outcome, MODEL, False, "ch", raw())
    data = STREAMS["chat-text"]
    assert tap.feed(data[: len(data) // 2])
    assert tap.end(cut=True) == b"" and outcome.error is None and outcome.first_chunk_at is not None


def test_text_is_counted_for_an_estimate_without_usage():
    data = b"\n\n".join(f for f in STREAMS["chat-text"].split(b"\n\n") if b'"usage":{' not in f)
    _, outcome = through_tap([data], False)
    assert outcome.usage is None and outcome.output_chars > 0
