"""Channel type `anthropic`: the Anthropic Messages API."""
from __future__ import annotations

from typing import Any

import aiohttp

from relay_config.schema import AnthropicChannel

from .. import jsonfast
from ..base import Call, Capabilities, StreamConverter
from ..errors import RelayError
from ..http import HttpAdaptor, UpstreamRequest
from . import errors
from .request import to_messages
from .response import to_completion
from .stream import SSEConverter


class AnthropicAdaptor(HttpAdaptor):
    # Responses reasoning items replayed by clients become thinking blocks again.
    capabilities = Capabilities(reasoning_items=True)

    def __init__(self, cfg: AnthropicChannel, session: aiohttp.ClientSession):
        super().__init__(cfg.name, cfg.timeout, session)
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/v1/messages"
        self.secret = cfg.api_key
        self._headers = {"content-type": "application/json", "anthropic-version": cfg.anthropic_version}
        if cfg.api_key:
            self._headers["x-api-key"] = cfg.api_key
        if cfg.betas:
            self._headers["anthropic-beta"] = ",".join(cfg.betas)

    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        req = call.request if stream == bool(call.request.get("stream")) else {**call.request, "stream": stream}
        conv = to_messages(req, call.upstream_model, self.cfg.default_max_tokens)
        call.ignored_params.extend(conv.ignored)
        call.json_tool = conv.json_tool
        headers = {**self._headers, **call.headers} if call.headers else self._headers
        return UpstreamRequest(self.url, headers, jsonfast.dumps(conv.body))

    def parse_response(self, body: bytes, call: Call) -> dict[str, Any]:
        return to_completion(self.name, body, call.request.get("model", call.upstream_model), call.json_tool)

    def stream_converter(self, call: Call) -> StreamConverter:
        return SSEConverter(self.name, call.request.get("model", call.upstream_model), call.json_tool)

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> RelayError:
        return errors.map_error(self.name, status, headers, body)
