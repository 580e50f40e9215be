"""A chat-completions stream relayed as the upstream's own bytes (channels that declare
`native_chat`), with the same answer the parse-and-encode path gives: every chunk names the
model the client asked for, the usage chunk and fields reach only clients that asked for
them, an in-band error ends the stream, and a stream cut before `[DONE]` says so in-band.

Per read, the usual frames cost no Python work: the model is renamed with one replace of the
upstream's own `"model":"..."` field over the whole frames of the read, and only the frame
that carries usage is parsed. A read in another shape (an error frame, CR line ends, `[DONE]` not as OpenAI writes
it) goes through the frame-by-frame converter instead. Sans-IO: bytes in, bytes out, facts
into the outcome.
"""
from __future__ import annotations

import re

from relay_adaptors.kernel import jsonfast
from relay_adaptors.kernel.base import RawUpstream, StreamItem
from relay_adaptors.kernel.errors import RelayError, upstream_bad_response
from relay_adaptors.kernel.sse import DONE
from relay_adaptors.openai.codec import ChatStreamConverter

from .chat_writer import ChatFrames
from .outcome import StreamOutcome
from .sse_scan import cut_frames, frame_data

_MODEL = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')
# Generated text in a delta: counted (not parsed), about a token each, for an estimate if the
# stream is cut before its usage arrives.
_TEXT = re.compile(rb'"(?:content|reasoning_content|arguments)"\s*:\s*"(?!")')
CHARS_PER_PIECE = 4
_DONE_FRAME = b"data: [DONE]\n\n"


class ChatTap:
    def __init__(self, outcome: StreamOutcome, model: str, include_usage: bool, channel: str, upstream: RawUpstream):
        self.outcome = outcome
        self.upstream = upstream  # its `failure` says why a stream stopped short
        self.include_usage = include_usage
        self.model = model
        self.model_field = b'"model":' + jsonfast.dumps(model)
        self.upstream_field: bytes | None = None  # the upstream's `"model":"..."`, as it writes it
        self.channel = channel
        self.converter = ChatStreamConverter(channel)  # the frame-by-frame reading
        self.frames_of = ChatFrames(include_usage, outcome, model)  # and its writing
        self.buf = b""
        self.done = False  # [DONE] or an error went out: nothing more is relayed
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        buf = self.buf + data if self.buf else data
        if b"\r" in buf:
            cut = cut_frames(buf)[1]
            whole, self.buf = buf[:cut], buf[cut:]
            return self._by_frame(whole) if whole else b""
        cut = buf.rfind(b"\n\n") + 2
        if cut < 2:
            self.buf = buf
            return b""
        whole, self.buf = buf[:cut], buf[cut:]
        if b'"error"' in whole:
            return self._by_frame(whole)
        if (at := whole.rfind(b"[DONE]")) >= 0:  # the last frame, when it is there
            if whole[at - 6:at + 8] != _DONE_FRAME:
                return self._by_frame(whole)  # not as OpenAI writes it
            self.done = True
            whole = whole[:at + 8]  # anything after [DONE] is not the answer's
        # Compact JSON (`"key":"value"`) is read with plain byte searches; a read that may
        # hold spaced JSON (`"key": "value"`) with the expressions, which read both.
        spaced = b'": "' in whole
        if (_USAGE.search(whole) is not None) if spaced else whole.rfind(b'"usage":{') >= 0:
            whole = self._usage(whole)
        if not self.include_usage and b'"usage"' in whole:  # the usage: null of every other chunk
            whole = _NULL_USAGE.sub(b"", whole) if spaced else whole.replace(b',"usage":null', b"")
        # Deltas with something in them (the role chunk has no text yet): counted, not parsed.
        pieces = len(_TEXT.findall(whole)) if spaced else whole.count(b'"delta":{"') - whole.count(b'"delta":{"role"')
        if pieces > 0:
            self.outcome.produced(CHARS_PER_PIECE * pieces)
        return self._rename(whole)

    def _rename(self, whole: bytes) -> bytes:
        """Every chunk's `model` becomes the client's: a plain replace of the upstream's own
        field (learnt from the first chunk) when every chunk carries that one."""
        if self.upstream_field is None:
            if (m := _MODEL.search(whole)) is None:
                return whole
            self.upstream_field = m.group(0)
        field, new = self.upstream_field, self.model_field
        fields = whole.count(b'"model"')
        renamed = whole.replace(field, new)
        if len(renamed) - len(whole) == fields * (len(new) - len(field)) and (len(new) != len(field) or whole.count(field) == fields):
            return renamed
        return _MODEL.sub(new, whole)  # a chunk named another model

    def _usage(self, whole: bytes) -> bytes:
        """Reads the usage frames; for a client that did not ask for usage, drops the usage
        chunk and the `usage: null` fields of the others."""
        out, at = [], 0
        for m in _USAGE.finditer(whole):
            if m.start() < at:
                continue  # inside a frame already read
            start = whole.rfind(b"\n\n", 0, m.start())
            start = start + 2 if start >= 0 else 0
            end = whole.find(b"\n\n", m.start()) + 2
            out.append(whole[at:start])
            at = end
            frame = whole[start:end]
            try:
                chunk = jsonfast.loads(frame_data(frame))
            except jsonfast.JSONDecodeError:
                out.append(frame)
                continue
            if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
                out.append(frame)
                continue
            self.outcome.usage = chunk["usage"]
            if self.include_usage:
                out.append(frame)
            elif chunk.get("choices"):
                del chunk["usage"]
                out.append(b"data: " + jsonfast.dumps(chunk) + b"\n\n")
        out.append(whole[at:])
        return b"".join(out)

    def _by_frame(self, whole: bytes) -> bytes:
        return self._frames(self._read(whole))

    def _read(self, data: bytes, closing: bool = False) -> list[StreamItem]:
        try:
            return self.converter.feed(data) + (self.converter.close() if closing else [])
        except ValueError as e:  # a frame the converter cannot read, as the converting path reports it
            return [upstream_bad_response(self.channel, str(e))]

    def _frames(self, items: list[StreamItem]) -> bytes:
        out = self.frames_of(items)
        if self.outcome.error is not None:
            self.done = True
        elif self.converter.done:
            self.done = True
            out += DONE
        return out

    def end(self, cut: bool = False) -> bytes:
        """The upstream finished: what is left to relay. A stream that stopped before
        `[DONE]` gets an in-band error, as the converting path gives; one `cut` (the client
        went away) keeps what was seen and adds nothing."""
        was_done, self.ended = self.done or self.ended, True
        if was_done or cut:
            return b""
        rest, self.buf = self.buf, b""
        if self.upstream.failure is None:
            return self._frames(self._read(rest, closing=True))
        items = self._read(rest)
        if self.converter.done or any(isinstance(i, RelayError) for i in items):
            return self._frames(items)
        return self._frames([*items, self.upstream.failure])  # the timeout or lost connection that cut it
