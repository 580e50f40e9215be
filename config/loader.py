"""Reads a YAML config: `${VAR}` / `${VAR:-default}` expansion, then schema validation.

Every error names the file, the line and the YAML path, and never shows a value that came
from a secret-bearing key (api_key, keys, headers, ...).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relay_adaptors.kernel.params import format_loc
from relay_adaptors.kernel.registry import installed

from .schema import CHANNEL_TYPES_CONTEXT, ChannelTypeIndex, RelayConfig, cross_entry_issues

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    line: int | None
    path: str
    message: str


class ConfigError(Exception):
    def __init__(self, source: str, issues: list[ConfigIssue]):
        self.source = source
        self.issues = issues
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for i in self.issues:
            where = f"{self.source}:{i.line}" if i.line else self.source
            out.append(f"{where} {i.path}: {i.message}" if i.path else f"{where}: {i.message}")
        return out


class _Builder:
    """Turns a composed YAML node tree into Python data, expanding env refs and remembering
    the line of every path so schema errors can point at it."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalars.construct_object(key_node)
                if key in out:
                    self.issues.append(ConfigIssue(key_node.start_mark.line + 1, format_loc(loc + (key,)), "duplicate key"))
                out[key] = self.build(value_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
            return self._expand(node.value, loc)
        return self._scalars.construct_object(node)

    def _expand(self, text: str, loc: Loc) -> str:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.issues.append(ConfigIssue(self.lines[loc], format_loc(loc), f"environment variable {name} is not set"))
            return m.group(0)  # left as written so no follow-on error (e.g. "empty key") hides this one

        return ENV_REF.sub(sub, text)

    def line_of(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())


def _schema_message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")


def parse_config(text: str, source: str = "<config>", env: Mapping[str, str] | None = None,
                 channel_types: ChannelTypeIndex | None = None) -> RelayConfig:
    """`channel_types`: the types a channel may name (default: the installed ones)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [ConfigIssue(line, "", f"invalid YAML: {getattr(e, 'problem', e)}")]) from None
    if root is None:
        raise ConfigError(source, [ConfigIssue(None, "", "the file is empty")])
    builder = _Builder(os.environ if env is None else env)
    data = builder.build(root)
    issues = list(builder.issues)
    if not isinstance(data, dict):
        issues.append(ConfigIssue(builder.line_of(()), "", "the top level must be a mapping"))
        raise ConfigError(source, issues)
    config = None
    try:
        types = installed() if channel_types is None else channel_types
        config = RelayConfig.model_validate(data, context={CHANNEL_TYPES_CONTEXT: types, "cross_entry_checked": True})
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"]
            issues.append(ConfigIssue(builder.line_of(loc), format_loc(loc), _schema_message(err)))
    # Checked on the raw data, so they come in the same run as the per-field errors.
    issues += [ConfigIssue(builder.line_of(loc), format_loc(loc), message) for loc, message in cross_entry_issues(data)]
    if issues or config is None:
        # In file order: the way an operator reads and fixes them.
        raise ConfigError(source, sorted(issues, key=lambda i: i.line or 0))
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> RelayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), [ConfigIssue(None, "", f"cannot read: {e.strerror}")]) from None
    return parse_config(text, source=str(p), env=env)
