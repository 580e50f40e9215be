"""Channel type `openai`: any OpenAI-compatible server."""
from __future__ import annotations

from typing import Any

import aiohttp

from relay_config.schema import OpenAIChannel

from .. import jsonfast
from ..base import Call, Capabilities, RawUpstream, StreamConverter
from ..errors import RelayError
from ..http import HttpAdaptor, UpstreamRequest
from . import codec


class OpenAIAdaptor(HttpAdaptor):
    def __init__(self, cfg: OpenAIChannel, session: aiohttp.ClientSession):
        super().__init__(cfg.name, cfg.timeout, session)
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.capabilities = Capabilities(native_responses=cfg.responses == "native")
        self.secret = cfg.api_key
        self._headers = {"content-type": "application/json", **cfg.headers}
        if cfg.api_key:
            self._headers["authorization"] = f"Bearer {cfg.api_key}"

    def _request_headers(self, call: Call) -> dict[str, str]:
        return {**self._headers, **call.headers} if call.headers else self._headers

    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        body = codec.upstream_body(call.request, call.upstream_model, stream)
        return UpstreamRequest(self.base_url + "/chat/completions", self._request_headers(call), body)

    def parse_response(self, body: bytes, call: Call) -> dict[str, Any]:
        return codec.parse_completion(self.name, body)

    def stream_converter(self, call: Call) -> StreamConverter:
        return codec.ChatStreamConverter(self.name)

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> RelayError:
        return codec.error_from_body(self.name, status, headers, body)

    async def responses_passthrough(self, call: Call) -> RawUpstream:
        body = jsonfast.dumps({**call.request, "model": call.upstream_model})
        return await self.raw(UpstreamRequest(self.base_url + "/responses", self._request_headers(call), body))
