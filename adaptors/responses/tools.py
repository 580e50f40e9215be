"""Responses tools -> chat tools, and tool names both ways.

Tool groups (`type: namespace`) are flattened into plain function tools whose names are valid
for every provider (`^[A-Za-z0-9_-]{1,64}$`); calls coming back are mapped to their original
namespace and name.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..kernel.errors import bad_request
from ..kernel.params import add_shown, shown

_VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# Dropped tool types are reflected (x-relay-dropped-tools, the log): token characters only,
# each cut short, and only so many distinct ones.
# Tool types the bridge can run through any chat upstream: the client executes them.
RUNNABLE = {"function", "namespace"}


@dataclass
class ToolNames:
    """(namespace, name) <-> the flat name sent upstream. Deterministic, so a later turn's
    history maps to the same names."""

    _back: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    def flat(self, namespace: str | None, name: str) -> str:
        joined = f"{namespace}__{name}" if namespace else name
        flat = joined if _VALID.match(joined) else self._sanitise(joined)
        self._back.setdefault(flat, (namespace, name))
        return flat

    def original(self, flat: str) -> tuple[str | None, str]:
        return self._back.get(flat, (None, flat))

    @staticmethod
    def _sanitise(joined: str) -> str:
        cleaned = _INVALID_CHARS.sub("_", joined) or "tool"
        # A short hash of the original keeps names that clean up alike distinct.
        tag = hashlib.sha256(joined.encode()).hexdigest()[:8]
        return f"{cleaned[:55]}_{tag}"


def _function_tool(tool: dict[str, Any], flat_name: str, param: str) -> dict[str, Any]:
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise bad_request(f"Missing required parameter: '{param}.name'.", param=f"{param}.name")
    for key, kind, name in (("description", str, "a string"), ("parameters", dict, "an object"), ("strict", bool, "a boolean")):
        if tool.get(key) is not None and not isinstance(tool[key], kind):
            raise bad_request(f"Invalid value for '{param}.{key}': expected {name}.", param=f"{param}.{key}")
    fn: dict[str, Any] = {"name": flat_name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _as_echoed(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool as a Response repeats it: with the fields the schema requires there."""
    if tool["type"] == "function":
        return {**tool, "parameters": tool.get("parameters"), "strict": tool.get("strict")}
    return {**tool, "description": tool.get("description") or ""}


@dataclass
class ConvertedTools:
    chat_tools: list[dict[str, Any]]
    kept: list[dict[str, Any]]  # the client's tools that are honoured, as it sent them (echoed back)
    dropped: list[str]  # types of tools that were left out: distinct, sanitised, bounded

    def drop(self, kind: str) -> None:
        add_shown(self.dropped, kind)


def convert_tools(tools: Any, names: ToolNames, reject_unsupported: bool) -> ConvertedTools:
    if tools is None:
        return ConvertedTools([], [], [])
    if not isinstance(tools, list):
        raise bad_request("Invalid value for 'tools': expected an array.", param="tools")
    out = ConvertedTools([], [], [])
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise bad_request(f"Missing required parameter: '{param}.type'.", param=f"{param}.type")
        if kind not in RUNNABLE:
            if reject_unsupported:
                raise bad_request(
                    f"Tool type '{shown(kind)}' cannot run on this model's channel; remove it or ask the operator "
                    "to set responses.unsupported_tools: drop.",
                    param=f"{param}.type",
                    code="unsupported_tool",
                )
            out.drop(kind)
            continue
        out.kept.append(_as_echoed(tool))
        if kind == "function":
            out.chat_tools.append(_function_tool(tool, names.flat(None, tool.get("name", "")), param))
            continue
        ns = tool.get("name")
        if not isinstance(ns, str) or not ns:
            raise bad_request(f"Missing required parameter: '{param}.name'.", param=f"{param}.name")
        for j, inner in enumerate(tool.get("tools") or []):
            inner_param = f"{param}.tools[{j}]"
            if not isinstance(inner, dict) or inner.get("type", "function") != "function":
                raise bad_request("Only function tools can be grouped in a namespace.", param=f"{inner_param}.type")
            out.chat_tools.append(_function_tool(inner, names.flat(ns, inner.get("name", "")), inner_param))
    return out


def convert_tool_choice(choice: Any, names: ToolNames) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": names.flat(choice.get("namespace"), choice["name"])}}
    raise bad_request(
        "Invalid value for 'tool_choice': only 'auto', 'none', 'required' or a function "
        "({\"type\": \"function\", \"name\": ...}) can be honoured on this channel.",
        param="tool_choice",
    )
