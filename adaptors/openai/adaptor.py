"""Channel type `openai`: any OpenAI-compatible server.

`api: chat` (the default) forwards chat requests almost untouched; `api: responses` is for
upstreams that serve only the Responses API: chat requests are converted to Responses
requests and the answers back (responses_api/), so chat clients (and every client Relay
bridges onto chat) reach them too. Which one is chosen once, when the channel is built.
"""
from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from relay_config.schema import OpenAIChannel

from ..kernel import jsonfast
from ..kernel.base import Call, Capabilities, ChatStream, RawUpstream, StreamConverter
from ..kernel.errors import RelayError, upstream_bad_response
from ..kernel.http import BASE_HEADERS, HttpAdaptor, UpstreamRequest
from . import codec, responses_api


class UpstreamApi(Protocol):
    """The pure parts that differ between the chat and the Responses upstream API."""

    path: str

    def body(self, call: Call, stream: bool) -> bytes: ...

    def parse(self, channel: str, body: bytes, call: Call) -> dict[str, Any]: ...

    def converter(self, channel: str, call: Call) -> StreamConverter: ...

    def client_error(self, err: RelayError, call: Call) -> RelayError: ...


class ChatApi:
    path = "/chat/completions"

    def body(self, call: Call, stream: bool) -> bytes:
        return codec.upstream_body(call.request, call.upstream_model, stream)

    def parse(self, channel: str, body: bytes, call: Call) -> dict[str, Any]:
        return codec.parse_completion(channel, body)

    def converter(self, channel: str, call: Call) -> StreamConverter:
        # Chat clients get this channel's own bytes (native_chat): a converted stream feeds a bridge.
        return codec.ChatStreamConverter(channel, for_bridge=True)

    def client_error(self, err: RelayError, call: Call) -> RelayError:
        return err


class ResponsesApi:
    path = "/responses"

    def body(self, call: Call, stream: bool) -> bytes:
        req = responses_api.to_responses(call.request, call.upstream_model, stream)
        call.ignored_params.extend(req.ignored)
        return jsonfast.dumps(req.body)

    def parse(self, channel: str, body: bytes, call: Call) -> dict[str, Any]:
        return responses_api.to_completion(channel, body, call.upstream_model)

    def converter(self, channel: str, call: Call) -> StreamConverter:
        return responses_api.ResponsesSSEConverter(channel, call.upstream_model)

    def client_error(self, err: RelayError, call: Call) -> RelayError:
        """The upstream names Responses parameters; the client sent chat ones."""
        err.param = responses_api.chat_param(err.param, call.request)
        return err


class OpenAIAdaptor(HttpAdaptor):
    def __init__(self, cfg: OpenAIChannel, session: aiohttp.ClientSession):
        super().__init__(cfg.name, cfg.timeout, session)
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.api: UpstreamApi = ResponsesApi() if cfg.api == "responses" else ChatApi()
        self.capabilities = Capabilities(native_chat=cfg.api == "chat", native_responses=cfg.responses == "native")
        self.secret = cfg.api_key
        self._headers = {**BASE_HEADERS, **cfg.headers}
        if cfg.api_key:
            self._headers["authorization"] = f"Bearer {cfg.api_key}"

    def _request_headers(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.headers} if call.headers else self._headers

    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        return UpstreamRequest(self.base_url + self.api.path, self._request_headers(call), self.api.body(call, stream))

    def parse_response(self, body: bytes, call: Call) -> dict[str, Any]:
        return self.api.parse(self.name, body, call)

    def stream_converter(self, call: Call) -> StreamConverter:
        return self.api.converter(self.name, call)

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> RelayError:
        return codec.error_from_body(self.name, status, headers, body)

    async def complete(self, call: Call) -> dict[str, Any]:
        try:
            return await super().complete(call)
        except RelayError as e:
            raise self.api.client_error(e, call) from None

    async def open_stream(self, call: Call) -> ChatStream:
        try:
            return await super().open_stream(call)
        except RelayError as e:
            raise self.api.client_error(e, call) from None

    async def responses_passthrough(self, call: Call) -> RawUpstream:
        body = jsonfast.dumps({**call.request, "model": call.upstream_model})
        return await self.raw(UpstreamRequest(self.base_url + "/responses", self._request_headers(call), body))

    async def chat_passthrough(self, call: Call) -> RawUpstream:
        try:
            raw = await self.raw(self.build_request(call, stream=True))
        except RelayError as e:
            raise self.api.client_error(e, call) from None
        if not raw.content_type.startswith("text/event-stream"):  # before any byte went out: may fail over
            await raw.chunks.aclose()
            raise upstream_bad_response(self.name, f"a stream was asked for and {raw.content_type or 'no content type'} came back")
        return raw
