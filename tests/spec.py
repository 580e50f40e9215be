"""The official OpenAI OpenAPI document as the oracle for everything Relay emits.

Schemas are taken from ../shared/specs/openai-openapi.json (override: RELAY_OPENAPI_SPEC) and
checked with jsonschema's Draft 2020-12 validator through a `referencing` registry. The
document still uses OpenAPI's `nullable: true` in places; it is read with its OpenAPI meaning
(the value may also be null) by rewriting it to `anyOf [..., {type: null}]` once at load.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]
URI = "urn:openai-openapi"


def spec_path() -> Path:
    env = os.environ.get("RELAY_OPENAPI_SPEC")
    return Path(env) if env else ROOT.parent / "shared" / "specs" / "openai-openapi.json"


def _openapi_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _spec() -> dict[str, Any]:
    with open(spec_path(), encoding="utf-8") as f:
        return _openapi_nullable(json.load(f))


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(URI, Resource.from_contents(_spec(), default_specification=DRAFT202012))


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    if schema_name not in _spec()["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in the OpenAPI document")
    return Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema_name}"}, registry=_registry())


def validate(schema_name: str, instance: Any) -> None:
    errors = sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        detail = "\n".join(f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:5])
        raise AssertionError(f"{schema_name} violated:\n{detail}\ninstance: {json.dumps(instance)[:2000]}")


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Responses stream event type -> the schema that defines it (from ResponseStreamEvent.anyOf)."""
    schemas = _spec()["components"]["schemas"]
    out: dict[str, str] = {}
    for ref in schemas["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        type_prop = schemas[name].get("properties", {}).get("type", {})
        for t in type_prop.get("enum", []) or ([type_prop["const"]] if "const" in type_prop else []):
            out[t] = name
    return out


def validate_response_event(event: dict[str, Any]) -> None:
    name = _event_schemas().get(event.get("type", ""))
    assert name, f"event type {event.get('type')!r} is not a Responses stream event in the spec"
    validate(name, event)


def validate_error(body: Any) -> None:
    validate("ErrorResponse", body)
