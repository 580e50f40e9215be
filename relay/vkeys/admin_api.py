"""The key endpoints of the admin API (ops listener, admin key):

    POST   /admin/keys                    create; the answer holds the secret, once
    GET    /admin/keys?tenant=NAME        list (never a secret)
    GET    /admin/keys/{id}               one key
    PATCH  /admin/keys/{id}               name, models, limits, expires_at, disabled, metadata
    DELETE /admin/keys/{id}               revoke
    POST   /admin/keys/{id}/rotate        a new secret; {"grace_seconds": N} keeps the old one N s
    GET    /admin/keys/{id}/audit         the key's audit trail (kept after a revocation)
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from relay_adaptors.kernel.errors import RelayError, bad_request

from ..admin import _guard
from ..appkeys import RUNTIME
from ..httpio import json_response, read_json
from ..store import StoreError
from .appkeys import KEY_CACHE, KEY_CLOCK, KEYSTORE
from .model import KeyInputError, KeyNotFound, VirtualKey
from .service import KeyService

ADMIN_ACTOR = "admin"  # the id of the one admin credential (server.admin_key), never the key itself


def _service(request: web.Request) -> KeyService:
    _guard(request)
    app = request.app
    tenants = {t.name for t in app[RUNTIME].current.config.tenants}
    return KeyService(app[KEYSTORE], tenants, ADMIN_ACTOR, app[KEY_CLOCK], on_change=app[KEY_CACHE].forget)


def _public(request: web.Request, key: VirtualKey, secret: str | None = None) -> dict[str, Any]:
    out = key.public(request.app[KEY_CLOCK]())
    if secret is not None:
        out["secret"] = secret  # shown once: only its digest is kept
    return out


async def _body(request: web.Request, optional: bool = False) -> Any:
    if optional and not request.can_read_body:
        return {}
    return await read_json(request, request.app[RUNTIME].current.config.server.max_body_bytes)


async def _call(work: Any) -> Any:
    try:
        return await work
    except KeyInputError as e:
        raise bad_request(str(e), param=e.param) from None
    except KeyNotFound as e:
        raise RelayError(404, str(e), param="id", code="key_not_found") from None
    except StoreError as e:
        raise RelayError(503, f"The key store is unavailable: {e}", type="api_error", code="store_unavailable") from None


async def create_key(request: web.Request) -> web.Response:
    svc = _service(request)
    key, secret = await _call(svc.create(await _body(request)))
    return json_response(_public(request, key, secret), status=201)


async def list_keys(request: web.Request) -> web.Response:
    svc = _service(request)
    keys = await _call(svc.store.list_keys(request.query.get("tenant")))
    return json_response({"object": "list", "data": [_public(request, k) for k in keys]})


async def get_key(request: web.Request) -> web.Response:
    svc = _service(request)
    return json_response(_public(request, await _call(svc.get(request.match_info["id"]))))


async def update_key(request: web.Request) -> web.Response:
    svc = _service(request)
    key = await _call(svc.update(request.match_info["id"], await _body(request)))
    return json_response(_public(request, key))


async def revoke_key(request: web.Request) -> web.Response:
    svc = _service(request)
    key = await _call(svc.revoke(request.match_info["id"]))
    return json_response({"id": key.id, "object": "relay.key", "deleted": True})


async def rotate_key(request: web.Request) -> web.Response:
    svc = _service(request)
    body = await _body(request, optional=True)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    grace: Any = body.get("grace_seconds", 0)
    if "grace_seconds" in request.query:
        try:
            grace = float(request.query["grace_seconds"])
        except ValueError:
            raise bad_request("'grace_seconds' must be a number of seconds.", param="grace_seconds") from None
    key, secret = await _call(svc.rotate(request.match_info["id"], grace))
    return json_response(_public(request, key, secret))


async def key_audit(request: web.Request) -> web.Response:
    svc = _service(request)
    key_id = request.match_info["id"]
    trail = await _call(svc.store.audit_trail(key_id))
    if not trail:
        raise RelayError(404, str(KeyNotFound(key_id)), param="id", code="key_not_found")
    return json_response({"object": "list", "data": trail})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/admin/keys", create_key)
    router.add_get("/admin/keys", list_keys)
    router.add_get("/admin/keys/{id}", get_key)
    router.add_patch("/admin/keys/{id}", update_key)
    router.add_delete("/admin/keys/{id}", revoke_key)
    router.add_post("/admin/keys/{id}/rotate", rotate_key)
    router.add_get("/admin/keys/{id}/audit", key_audit)
