"""The `echo` adaptor: Relay's HttpAdaptor does the I/O (connect, first-byte, idle and total
timeouts, error bodies, closing the upstream); this class only supplies the pure parts."""
from __future__ import annotations

import json
from typing import Any

import aiohttp
from relay_adaptors.kernel.base import Call, Capabilities, StreamConverter
from relay_adaptors.kernel.errors import RelayError
from relay_adaptors.kernel.http import HttpAdaptor, UpstreamRequest

from . import protocol
from .settings import EchoChannel


class EchoAdaptor(HttpAdaptor):
    # Declared once; Relay reads this value and never probes the adaptor. Echo has no tools,
    # no native Responses or Messages API: Relay's bridges serve those clients from chat.
    capabilities = Capabilities(client_tools=False)

    def __init__(self, cfg: EchoChannel, session: aiohttp.ClientSession):
        super().__init__(cfg.name, cfg.timeout, session)
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.secret = cfg.api_key  # HttpAdaptor scrubs it from every upstream error message
        self._headers = {"content-type": "application/json"}
        if cfg.api_key:
            self._headers["echo-key"] = cfg.api_key

    def build_request(self, call: Call, stream: bool) -> UpstreamRequest:
        script = protocol.to_script(call.request, call.upstream_model, self.cfg.max_words)
        call.ignored_params.extend(script.ignored)
        url = self.base_url + ("/speak/live" if stream else "/speak")
        return UpstreamRequest(url, {**self._headers, **call.headers}, json.dumps(script.body).encode())

    def parse_response(self, body: bytes, call: Call) -> dict[str, Any]:
        return protocol.to_completion(self.name, body, call.request.get("model", call.upstream_model))

    def stream_converter(self, call: Call) -> StreamConverter:
        return protocol.LiveConverter(self.name, call.request.get("model", call.upstream_model))

    def map_error(self, status: int, headers: dict[str, str], body: bytes) -> RelayError:
        return protocol.to_error(self.name, status, body)
