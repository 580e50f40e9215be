"""Shared fixtures: fake upstreams and a Relay app, both real servers on 127.0.0.1."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.connections import ClientLimits, GuardedRunner
from relay.ops import ops_app
from relay_config.loader import parse_config

from .fakes.anthropic import FakeAnthropic
from .fakes.openai import FakeOpenAI
from .support import ENV, Relay, anthropic_channel, base_config, serve_fake


@pytest.fixture
async def fake_openai(aiohttp_server: Callable[..., Any]) -> FakeOpenAI:
    return await serve_fake(FakeOpenAI(), aiohttp_server)


@pytest.fixture
async def fake_anthropic(aiohttp_server: Callable[..., Any]) -> FakeAnthropic:
    return await serve_fake(FakeAnthropic(), aiohttp_server)


@pytest.fixture
async def claude_relay(make_relay: Callable[..., Any], fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> Relay:
    config = base_config(fake_openai.url, extra_channels=anthropic_channel(fake_anthropic.url))
    return await make_relay(config.replace('"broken-*", "slow-*"]', '"broken-*", "slow-*", "claude-*"]'))


class RelayTestServer(TestServer):
    """A test server run like `relay serve` runs the app: with the client connection limits."""

    def __init__(self, app: Any, limits: ClientLimits):
        super().__init__(app, host="127.0.0.1")
        self.limits = limits

    async def _make_runner(self, **kwargs: Any) -> GuardedRunner:
        return GuardedRunner(self.app, self.limits, **kwargs)


@pytest.fixture
async def make_relay() -> AsyncIterator[Callable[..., Any]]:
    servers: list[RelayTestServer] = []

    async def make(config_text: str, env: dict[str, str] | None = None, clock: Callable[[], float] | None = None) -> Relay:
        if "\nstore:" not in "\n" + config_text:
            config_text += "store:\n  url: memory://\n"
        config = parse_config(config_text, "test.yaml", env={**ENV, **(env or {})})
        app = create_app(config) if clock is None else create_app(config, clock=clock)
        limits = ClientLimits.of(config.server)
        server = RelayTestServer(app, limits)
        await server.start_server()
        ops = RelayTestServer(ops_app(server.app), limits)  # as `relay serve` runs it: guarded too
        await ops.start_server()
        servers.extend((server, ops))
        return Relay(server, config_text, ops)

    yield make
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def relay(make_relay: Callable[..., Any], fake_openai: FakeOpenAI) -> Relay:
    return await make_relay(base_config(fake_openai.url))


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in stream]
