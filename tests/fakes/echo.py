"""A fake upstream speaking the Echo protocol of the example plugin (examples/relay-echo).

It answers "echo: <the last human line>", word by word when streaming, cut at max_words.
The voice (the upstream model name) picks what else it does:

- `unwell`: 503 with retry_in 2; `busy`: 429 with retry_in 7; `rude`: 400
- `leaky`: a 503 whose trouble text quotes the Echo-Key it got
- `falters`: streams two words, then a trouble line (non-streaming: a 500)
- any request whose Echo-Key is not `key` is a 401
"""
from __future__ import annotations

import json

from aiohttp import web

from .base import FIXTURES, FakeUpstream

KEY = "sk-echo-upstream-secret"


class FakeEcho(FakeUpstream):
    def __init__(self) -> None:
        super().__init__(FIXTURES)  # no recorded transcripts: the protocol is generated

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/speak", self.speak)
        app.router.add_post("/speak/live", self.speak_live)
        return app

    def pieces(self, data: bytes) -> list[bytes]:
        if self.chunking == "event":  # one write per line
            return [line + b"\n" for line in data.split(b"\n") if line]
        return super().pieces(data)

    def _trouble(self, body: dict, live: bool, key: str) -> web.Response | None:
        if key != KEY:
            return web.json_response({"trouble": f"unknown key {key}"}, status=401)
        voice = body["voice"]
        if voice == "unwell":
            return web.json_response({"trouble": "the echo chamber is closed", "retry_in": 2}, status=503)
        if voice == "leaky":  # an upstream that quotes the key it got
            return web.json_response({"trouble": f"key {key} is over quota"}, status=503)
        if voice == "busy":
            return web.json_response({"trouble": "too many voices", "retry_in": 7}, status=429)
        if voice == "rude":
            return web.json_response({"trouble": "that voice is not allowed here"}, status=400)
        if voice == "falters" and not live:
            return web.json_response({"trouble": "lost the thread"}, status=500)
        return None

    @staticmethod
    def answer(body: dict) -> tuple[list[str], int, str]:
        """(the words said, words heard, ending)."""
        heard = sum(len(turn["line"].split()) for turn in body["script"])
        last = next(turn["line"] for turn in reversed(body["script"]) if turn["who"] == "human")
        words = ("echo: " + last).split()
        ending = "out_of_words" if len(words) > body["max_words"] else "done"
        return words[: body["max_words"]], heard, ending

    async def speak(self, request: web.Request) -> web.Response:
        body = await self.record(request)
        if (refusal := self._trouble(body, False, request.headers.get("Echo-Key", ""))) is not None:
            return refusal
        words, heard, ending = self.answer(body)
        return web.json_response({"said": " ".join(words), "heard": heard, "spoken": len(words), "ending": ending})

    async def speak_live(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        if (refusal := self._trouble(body, True, request.headers.get("Echo-Key", ""))) is not None:
            return refusal
        words, heard, ending = self.answer(body)
        said = [w + " " for w in words[:-1]] + words[-1:]
        if body["voice"] == "falters":
            lines = [{"say": w} for w in said[:2]] + [{"trouble": "lost the thread"}]
        else:
            lines = [{"say": w} for w in said] + [{"done": {"heard": heard, "spoken": len(words), "ending": ending}}]
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return await self.replay(request, data, content_type="application/x-ndjson")
