"""Channel type `anthropic`: the Anthropic Messages API."""
from __future__ import annotations

from typing import Any

import aiohttp

from relay_config.schema import AnthropicChannel

from ..kernel import jsonfast
from ..kernel.base import Call, Capabilities, RawUpstream, StreamConverter
from ..kernel.errors import RelayError, upstream_bad_response
from ..kernel.http import BASE_HEADERS, HttpAdaptor, UpstreamRequest
from ..messages.count import count_body
from . import errors
from .request import to_messages
from .response import to_completion
from .stream import SSEConverter


class AnthropicAdaptor(HttpAdaptor):
    # Responses reasoning items replayed by clients become thinking blocks again; Messages
    # requests go up untouched (NativeMessages) and can be counted upstream (TokenCounter).
    capabilities = Capabilities(native_messages=True, counts_tokens=True, reasoning_items=True)

    def __init__(self, cfg: AnthropicChannel, session: aiohttp.ClientSession):
        super().__init__(cfg.name, cfg.timeout, session)
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/v1/messages"
        self.secret = cfg.api_key
        self._headers = {**BASE_HEADERS, "anthropic-version": cfg.anthropic_version}
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

    # --- Messages passthrough (NativeMessages, TokenCounter) ------------------------------
    def _native_headers(self, call: Call) -> dict[str, str]:
        """The channel's headers with the client's: its anthropic-version wins, its betas are
        added to the channel's."""
        headers = dict(self._headers)
        for key, value in call.headers.items():
            if key.lower() == "anthropic-beta":
                betas = [b for b in headers.get("anthropic-beta", "").split(",") if b]
                betas += [b for b in (x.strip() for x in value.split(",")) if b and b not in betas]
                headers["anthropic-beta"] = ",".join(betas)
            else:
                headers[key.lower()] = value
        return headers

    async def messages_passthrough(self, call: Call) -> RawUpstream:
        body = jsonfast.dumps({**call.request, "model": call.upstream_model})
        return await self.raw(UpstreamRequest(self.url, self._native_headers(call), body))

    async def count_tokens(self, call: Call) -> int:
        body = jsonfast.dumps(count_body(call.request, call.upstream_model))
        raw = await self.raw(UpstreamRequest(self.url + "/count_tokens", self._native_headers(call), body))
        data = b"".join([chunk async for chunk in raw.chunks])
        try:
            count = jsonfast.loads(data).get("input_tokens")
        except (jsonfast.JSONDecodeError, AttributeError):
            count = None
        if not isinstance(count, int):
            raise upstream_bad_response(self.name, "the token count is not {\"input_tokens\": N}")
        return count
