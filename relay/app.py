"""The app factory: `create_app(config) -> web.Application`."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from relay_adaptors.kernel.errors import RelayError
from relay_config.schema import RelayConfig

from . import handlers, messages, responses_api, responses_extra
from .appkeys import ACCOUNTED, BACKGROUND, BREAKERS, CONFIG_PATH, METRICS, REQUEST_ID, RUNTIME, SESSION, STORE, THINKING, RuntimeHolder
from .breaker import Breakers
from .conversations import ROUTES as CONVERSATION_ROUTES
from .conversations import context as conversations_context
from .httpio import error_response, request_id
from .logs import log_request
from .metrics import Metrics
from .ops import OPS_SPLIT, add_ops_routes
from .runtime import build_runtime
from .stateful import endpoints as stored_responses
from .stateful.appkeys import RECORDS, RUNS
from .stateful.background import Runs
from .stateful.background import cancel as cancel_response
from .stateful.records import ResponseRecords, sweep_expired
from .store import open_store
from .store.base import stop_task
from .thinking_memory import ThinkingMemory
from .vkeys import wiring as virtual_keys

log = logging.getLogger("relay")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: logged only when they fail


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # One coroutine, no helper awaited around the handler: a stream holds every frame it
    # waits in for as long as it is open.
    rid = request_id(request)
    request[REQUEST_ID] = rid
    started = time.monotonic()
    try:
        resp = await handler(request)
    except RelayError as e:
        resp = error_response(e, {"x-request-id": rid})
    except web.HTTPException as e:
        if e.status < 400:
            raise
        err = RelayError(e.status, _http_message(e, request), code="not_found" if e.status == 404 else None)
        resp = error_response(err, {"x-request-id": rid, **({"Allow": e.headers["Allow"]} if "Allow" in e.headers else {})})
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError: the client hung up before the headers
        log.info("client went away before the response on %s %s (request %s)", request.method, request.path, rid)
        resp = web.Response(status=499)  # "client closed request"; nobody is left to read it
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, rid)
        resp = error_response(RelayError(500, "Internal error in the gateway; it has been logged.", type="server_error"),
                              {"x-request-id": rid})
    else:
        if not resp.prepared:
            resp.headers.setdefault("x-request-id", rid)
    # Model calls are logged by their accounting, with tokens; everything else here.
    if not request.get(ACCOUNTED) and (resp.status >= 400 or request.path not in QUIET):
        holder = request.app.get(RUNTIME)
        if holder is None or holder.current.config.server.access_log:
            log_request({"request_id": rid, "method": request.method, "path": request.path, "status": resp.status,
                         "duration_ms": round((time.monotonic() - started) * 1000, 2), "client": request.remote})
    return resp


def _http_message(e: web.HTTPException, request: web.Request) -> str:
    if e.status == 404:
        return f"Unknown path: {request.method} {request.path}"
    if e.status == 405:
        return f"Method {request.method} is not allowed on {request.path}"
    return e.reason


def create_app(config: RelayConfig, config_path: str | Path | None = None, *,
               clock: Callable[[], float] = time.monotonic) -> web.Application:
    """`clock` drives the channel breakers (injected by tests)."""
    # Body size is enforced per request from the live config (see httpio.read_json).
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 40)
    if config_path is not None:
        app[CONFIG_PATH] = Path(config_path)
    app[METRICS] = Metrics()
    app[OPS_SPLIT] = config.server.ops_listen is not None  # `relay serve --ops-listen` may say otherwise

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
            # No cookie jar: a cookie one upstream answer sets must never ride along on
            # another tenant's request (and the jar's bookkeeping costs time per request).
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )
        app[SESSION] = session
        app[RUNTIME] = RuntimeHolder(build_runtime(config, session))
        app[BREAKERS] = Breakers(config.router.cooldown, clock, on_cooldown=lambda ch: app[METRICS].cooldowns.labels(ch).inc())
        yield
        await session.close()

    async def usage_store(app: web.Application) -> AsyncIterator[None]:
        store = open_store(config.store.url)
        await store.start()
        app[STORE] = store
        # Shared by every instance on the store, so a tool turn may continue anywhere.
        app[THINKING] = ThinkingMemory(store)
        app[RECORDS] = ResponseRecords(store, config.responses.retention, config.responses.max_stored_bytes)
        app[RUNS] = Runs()
        sweeper = asyncio.get_running_loop().create_task(sweep_expired(store))
        tasks: set[asyncio.Task[Any]] = set()
        app[BACKGROUND] = tasks
        yield
        # Streams still closing (CLI processes being reaped) and settlements still running.
        while tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        await stop_task(sweeper)
        await store.close()

    async def stop_background_runs(app: web.Application) -> None:
        await app[RUNS].stop_all()  # each stores itself as failed, before the store closes

    app.on_shutdown.append(stop_background_runs)
    app.cleanup_ctx.append(usage_store)
    app.cleanup_ctx.append(upstream_session)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_post("/v1/responses", responses_api.responses)
    app.router.add_get("/v1/responses", responses_api.no_websocket)
    app.router.add_post("/v1/responses/input_tokens", responses_extra.input_tokens)  # before any /v1/responses/{id}
    app.router.add_post("/v1/responses/compact", responses_extra.compact)
    app.router.add_get("/v1/responses/{response_id}", stored_responses.get_response)
    app.router.add_delete("/v1/responses/{response_id}", stored_responses.delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", stored_responses.input_items)
    app.router.add_post("/v1/responses/{response_id}/cancel", cancel_response)
    app.router.add_post("/v1/messages", messages.messages)
    app.router.add_post("/v1/messages/count_tokens", messages.count_tokens)
    # Conversations (/v1/conversations..., relay/conversations.py), kept in the store's documents:
    # their context opens after the store's.
    app.cleanup_ctx.append(conversations_context(config.responses))
    for method, path, handler in CONVERSATION_ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/", messages.root)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/v1/models/{model}", handlers.get_model)
    add_ops_routes(app.router)
    virtual_keys.install(app, config)
    return app
