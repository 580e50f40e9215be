"""Conversation items, ids, metadata and pages (pure: no I/O, no aiohttp).

Every client value is checked here before it is stored: an item is rebuilt from the fields
of its type that Relay knows (never stored as sent), so what the Conversations endpoints
answer later is always a spec-shaped item, and what the Responses bridge reads back as
history is always something it can convert. Item types are the ones the bridge converts:
messages, function calls, function call outputs and reasoning.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any

from relay_adaptors.kernel.errors import RelayError, bad_request
from relay_adaptors.kernel.ids import new_id

CONVERSATION_PREFIX = "conv_"
MAX_NEW_ITEMS = 20  # per request, as OpenAI (creation and items.create)
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512

# Ids a client may choose (items) or name (paths, `after`): OpenAI's shapes are letters,
# digits and underscores; hyphens too for ids other SDKs make up. Bounded so that a key
# in the store, a log line or an error message is never large.
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CONVERSATION_ID = re.compile(r"conv_[A-Za-z0-9_-]{1,123}")

INCLUDABLE = frozenset({
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
    "reasoning.encrypted_content", "message.output_text.logprobs",
})

_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}
_STATUSES = ("in_progress", "completed", "incomplete")
_INPUT_ROLES = ("user", "system", "developer")
_IMAGE_DETAIL = ("low", "high", "auto", "original")
_FILE_DETAIL = ("low", "high")


def not_found(what: str, ident: str, param: str) -> RelayError:
    """`ident` has passed an id check: safe to repeat."""
    return RelayError(404, f"{what} with id '{ident}' not found.", param=param, code=f"{what.lower()}_not_found")


def check_conversation_id(value: str, param: str) -> str:
    """A conversation id in Relay's shape, else a 400 (the value is not repeated: it may be anything)."""
    if not _CONVERSATION_ID.fullmatch(value):
        raise bad_request(f"Invalid '{param}': expected an ID that begins with 'conv_' followed by at most 123 "
                          "letters, digits, '_' or '-'.", param=param, code="invalid_value")
    return value


def check_item_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise bad_request(f"Invalid '{param}': expected an ID of 1 to 128 letters, digits, '_' or '-'.",
                          param=param, code="invalid_value")
    return value


def check_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, string keys of at most 64 characters and
    string values of at most 512. None is no metadata."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"Invalid type for '{param}': expected an object of string values.", param=param, code="invalid_type")
    if len(value) > MAX_METADATA_PAIRS:
        raise bad_request(f"Invalid '{param}': at most {MAX_METADATA_PAIRS} key-value pairs are allowed, got {len(value)}.",
                          param=param, code="invalid_value")
    for key, val in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise bad_request(f"Invalid '{param}': keys are at most {MAX_METADATA_KEY} characters.", param=param, code="invalid_value")
        if not isinstance(val, str):
            raise bad_request(f"Invalid type for '{param}.{key}': expected a string.", param=f"{param}.{key}", code="invalid_type")
        if len(val) > MAX_METADATA_VALUE:
            raise bad_request(f"Invalid '{param}.{key}': values are at most {MAX_METADATA_VALUE} characters.",
                              param=f"{param}.{key}", code="invalid_value")
    return dict(value)


def check_include(values: Iterable[str]) -> frozenset[str]:
    out = frozenset(values)
    for value in out:
        if value not in INCLUDABLE:
            raise bad_request(f"Invalid value for 'include': {value[:100]!r} (expected any of {sorted(INCLUDABLE)}).",
                              param="include", code="invalid_value")
    return out


def check_new_items(raw: Any, param: str = "items") -> list[Any]:
    """The `items` array of a create call: a list of 1 to 20 entries (each checked by new_items)."""
    if not isinstance(raw, list):
        raise bad_request(f"Invalid type for '{param}': expected an array of items.", param=param, code="invalid_type")
    if not raw or len(raw) > MAX_NEW_ITEMS:
        raise bad_request(f"Invalid '{param}': expected 1 to {MAX_NEW_ITEMS} items, got {len(raw)}.", param=param,
                          code="invalid_value" if raw else "empty_array")
    return raw


# --- items ----------------------------------------------------------------------------------
def new_items(raw: list[Any], param: str, taken: set[str], *, reassign_taken: bool) -> list[dict[str, Any]]:
    """Items as stored: each rebuilt from the fields its type has, with an id (the client's
    when it gave a valid one, else Relay's) unique among `taken` (updated). A client's id
    that is malformed or already taken is a 400; with `reassign_taken` it is replaced by a
    fresh one instead (a response's input, appended once the response is done, must not fail
    over an id the conversation already holds)."""
    out = []
    for i, item in enumerate(raw):
        p = f"{param}[{i}]"
        stored = _item(item, p)
        given = item.get("id")
        if given is not None and not reassign_taken:
            check_item_id(given, f"{p}.id")
            if given in taken:
                raise bad_request(f"Invalid '{p}.id': the conversation already has an item with id '{given}'.",
                                  param=f"{p}.id", code="duplicate_item_id")
        elif given is not None and (not isinstance(given, str) or not _ID.fullmatch(given) or given in taken):
            given = None
        ident = given if given is not None else new_id(_ID_PREFIX[stored["type"]])
        taken.add(ident)
        out.append({"id": ident, **stored})
    return out


def _item(item: Any, p: str) -> dict[str, Any]:
    _need(isinstance(item, dict), f"Invalid type for '{p}': expected an object.", p, "invalid_type")
    kind = item.get("type", "message" if "role" in item else None)
    match kind:
        case "message":
            return _message(item, p)
        case "function_call":
            return _function_call(item, p)
        case "function_call_output":
            return _function_call_output(item, p)
        case "reasoning":
            return _reasoning(item, p)
    raise bad_request(f"Invalid value for '{p}.type': conversation items of type {str(kind)[:64]!r} are not supported "
                      "through Relay (message, function_call, function_call_output and reasoning are).",
                      param=f"{p}.type", code="invalid_value")


def _message(item: dict[str, Any], p: str) -> dict[str, Any]:
    role = item.get("role")
    _need(role in (*_INPUT_ROLES, "assistant"), f"Invalid value for '{p}.role': expected user, assistant, system or developer.",
          f"{p}.role", "invalid_value")
    content = item.get("content")
    if isinstance(content, str):
        parts = [_output_text(content) if role == "assistant" else {"type": "input_text", "text": content}]
    elif isinstance(content, list):
        parts = [_part(part, f"{p}.content[{j}]", assistant=role == "assistant") for j, part in enumerate(content)]
    else:
        raise bad_request(f"Invalid type for '{p}.content': expected a string or an array of content parts.",
                          param=f"{p}.content", code="invalid_type")
    out: dict[str, Any] = {"type": "message", "status": _status(item, p), "role": role, "content": parts}
    if role == "assistant" and item.get("phase") is not None:
        _need(item["phase"] in ("commentary", "final_answer"), f"Invalid value for '{p}.phase'.", f"{p}.phase", "invalid_value")
        out["phase"] = item["phase"]
    return out


def _output_text(text: str, annotations: list[Any] | None = None, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": logprobs or []}


def _part(part: Any, p: str, *, assistant: bool) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    allowed = ("output_text", "refusal", "input_text") if assistant else ("input_text", "input_image", "input_file")
    _need(kind in allowed, f"Invalid value for '{p}.type': expected one of {list(allowed)}.", f"{p}.type", "invalid_value")
    assert isinstance(part, dict)
    if kind == "refusal":
        return {"type": "refusal", "refusal": _string(part, "refusal", p)}
    if kind == "output_text":
        return _output_text(_string(part, "text", p), _annotations(part.get("annotations"), f"{p}.annotations"),
                            _logprobs(part.get("logprobs"), f"{p}.logprobs", top=True))
    if kind == "input_text":
        return {"type": "input_text", "text": _string(part, "text", p)}
    if part.get("file_id") is not None:
        raise bad_request("Files by 'file_id' are not available through Relay; send the content itself.",
                          param=f"{p}.file_id", code="unsupported_parameter")
    if kind == "input_image":
        url = _string(part, "image_url", p)
        detail = part.get("detail", "auto")
        _need(detail in _IMAGE_DETAIL, f"Invalid value for '{p}.detail'.", f"{p}.detail", "invalid_value")
        return {"type": "input_image", "image_url": url, "detail": detail}
    out = {"type": "input_file"}
    for key in ("file_data", "file_url", "filename"):
        if part.get(key) is not None:
            out[key] = _string(part, key, p)
    _need("file_data" in out or "file_url" in out, f"Missing required parameter: '{p}.file_data'.", f"{p}.file_data", "missing_required_parameter")
    if part.get("detail") is not None:
        _need(part["detail"] in _FILE_DETAIL, f"Invalid value for '{p}.detail'.", f"{p}.detail", "invalid_value")
        out["detail"] = part["detail"]
    return out


def _function_call(item: dict[str, Any], p: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function_call", "status": _status(item, p), "call_id": _call_id(item, p),
                           "name": _string(item, "name", p), "arguments": _string(item, "arguments", p)}
    if item.get("namespace") is not None:
        out["namespace"] = _string(item, "namespace", p)
    return out


def _function_call_output(item: dict[str, Any], p: str) -> dict[str, Any]:
    output = item.get("output")
    if isinstance(output, list):
        output = [_part(part, f"{p}.output[{j}]", assistant=False) for j, part in enumerate(output)]
    else:
        output = _string(item, "output", p)
    return {"type": "function_call_output", "status": _status(item, p), "call_id": _call_id(item, p), "output": output}


def _reasoning(item: dict[str, Any], p: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "reasoning", "status": _status(item, p),
                           "summary": _texts(item.get("summary", []), "summary_text", f"{p}.summary")}
    if item.get("content") is not None:
        out["content"] = _texts(item["content"], "reasoning_text", f"{p}.content")
    if item.get("encrypted_content") is not None:
        out["encrypted_content"] = _string(item, "encrypted_content", p)
    return out


def _texts(raw: Any, kind: str, p: str) -> list[dict[str, Any]]:
    _need(isinstance(raw, list), f"Invalid type for '{p}': expected an array.", p, "invalid_type")
    out = []
    for j, part in enumerate(raw):
        q = f"{p}[{j}]"
        _need(isinstance(part, dict) and part.get("type") == kind, f"Invalid value for '{q}.type': expected '{kind}'.",
              f"{q}.type", "invalid_value")
        out.append({"type": kind, "text": _string(part, "text", q)})
    return out


def _call_id(item: dict[str, Any], p: str) -> str:
    call_id = _string(item, "call_id", p)
    _need(0 < len(call_id) <= 64, f"Invalid '{p}.call_id': expected 1 to 64 characters.", f"{p}.call_id", "invalid_value")
    return call_id


def _status(item: dict[str, Any], p: str) -> str:
    status = item.get("status")
    if status is None:
        return "completed"
    _need(status in _STATUSES, f"Invalid value for '{p}.status': expected one of {list(_STATUSES)}.", f"{p}.status", "invalid_value")
    return str(status)


def _string(obj: dict[str, Any], key: str, p: str) -> str:
    value = obj.get(key)
    if value is None:
        raise bad_request(f"Missing required parameter: '{p}.{key}'.", param=f"{p}.{key}", code="missing_required_parameter")
    _need(isinstance(value, str), f"Invalid type for '{p}.{key}': expected a string.", f"{p}.{key}", "invalid_type")
    return str(value)


# Annotation type -> its fields (OpenAI's document: every one of them required).
_ANNOTATIONS: dict[str, dict[str, type]] = {
    "file_citation": {"file_id": str, "index": int, "filename": str},
    "url_citation": {"url": str, "start_index": int, "end_index": int, "title": str},
    "container_file_citation": {"container_id": str, "file_id": str, "start_index": int, "end_index": int, "filename": str},
    "file_path": {"file_id": str, "index": int},
}


def _annotations(raw: Any, p: str) -> list[dict[str, Any]]:
    out = []
    for j, ann in enumerate(_list(raw, p)):
        q = f"{p}[{j}]"
        fields = _ANNOTATIONS.get(str(ann.get("type"))) if isinstance(ann, dict) else None
        _need(fields is not None, f"Invalid value for '{q}.type': expected one of {list(_ANNOTATIONS)}.", f"{q}.type", "invalid_value")
        assert fields is not None
        out.append({"type": ann["type"], **{k: _typed(ann, k, t, q) for k, t in fields.items()}})
    return out


def _logprobs(raw: Any, p: str, *, top: bool) -> list[dict[str, Any]]:
    out = []
    for j, lp in enumerate(_list(raw, p)):
        q = f"{p}[{j}]"
        _need(isinstance(lp, dict), f"Invalid type for '{q}': expected an object.", q, "invalid_type")
        byte_values = _list(lp.get("bytes"), f"{q}.bytes")
        _need(all(type(b) is int for b in byte_values), f"Invalid type for '{q}.bytes': expected integers.", f"{q}.bytes", "invalid_type")
        entry = {"token": _typed(lp, "token", str, q), "logprob": _typed(lp, "logprob", float, q), "bytes": byte_values}
        if top:
            entry["top_logprobs"] = _logprobs(lp.get("top_logprobs"), f"{q}.top_logprobs", top=False)
        out.append(entry)
    return out


def _list(raw: Any, p: str) -> list[Any]:
    if raw is None:
        return []
    _need(isinstance(raw, list), f"Invalid type for '{p}': expected an array.", p, "invalid_type")
    return list(raw)


def _typed(obj: dict[str, Any], key: str, kind: type, p: str) -> Any:
    value = obj.get(key)
    ok = isinstance(value, str) if kind is str else type(value) is int or (kind is float and type(value) is float)
    _need(ok, f"Invalid type for '{p}.{key}': expected {'a string' if kind is str else 'a number'}.", f"{p}.{key}",
          "invalid_type" if value is not None else "missing_required_parameter")
    return value


def _need(cond: bool, message: str, param: str, code: str) -> None:
    if not cond:
        raise bad_request(message, param=param, code=code)


# --- presenting -----------------------------------------------------------------------------
def presented(item: dict[str, Any], include: Collection[str]) -> dict[str, Any]:
    """A stored item as the endpoints show it: large or sensitive parts only when asked for
    with `include` (OpenAI's rule), everything else as stored."""
    kind = item.get("type")
    if kind == "reasoning" and "reasoning.encrypted_content" not in include and "encrypted_content" in item:
        item = {k: v for k, v in item.items() if k != "encrypted_content"}
    elif kind == "message":
        logprobs = "message.output_text.logprobs" in include
        images = "message.input_image.image_url" in include
        if not (logprobs and images) and isinstance(item.get("content"), list):
            item = {**item, "content": [_trimmed(part, logprobs, images) for part in item["content"]]}
    return item


def _trimmed(part: dict[str, Any], logprobs: bool, images: bool) -> dict[str, Any]:
    if part.get("type") == "output_text" and not logprobs and part.get("logprobs"):
        return {**part, "logprobs": []}
    if part.get("type") == "input_image" and not images:
        return {**part, "image_url": None}
    return part


# --- pages ----------------------------------------------------------------------------------
