"""Channel types: found through the `relay.adaptors` entry-point group, built-in or not.

A distribution registers a channel type with one entry point whose name is the type name
(what a channel's `type:` says) and whose object is a `ChannelType`:

    [project.entry-points."relay.adaptors"]
    echo = "relay_echo:CHANNEL_TYPE"

Relay's own four types register exactly this way (pyproject.toml); nothing here knows them.
A plugin that fails to import, or whose object breaks the contract, is remembered with the
reason: a channel of that type is then a config error naming the plugin and the exception.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin

import aiohttp

from relay_config.schema import ChannelBase

from .base import Adaptor

GROUP = "relay.adaptors"

S = TypeVar("S", bound=ChannelBase)


@dataclass(frozen=True, slots=True)
class ChannelType(Generic[S]):
    """What a channel-type plugin exports: its name, its settings model and its factory."""

    name: str  # the `type:` value; must equal the entry point's name
    settings: type[S]  # a ChannelBase subclass with `type: Literal[name]`, validated like built-in settings
    # Builds one channel's adaptor from its validated settings, at startup and on reload
    # (never per request). HTTP channels use the shared session; it must not do I/O.
    create: Callable[[S, aiohttp.ClientSession], Adaptor]
    package: str = ""  # the distribution that registered it (filled in by discovery)
    version: str = ""

    @property
    def origin(self) -> str:
        return f"{self.package} {self.version}".strip() or "unknown package"


@dataclass(frozen=True, slots=True)
class BrokenPlugin:
    """An entry point that could not be turned into a ChannelType, and why."""

    name: str
    package: str
    version: str
    reason: str

    def message(self) -> str:
        return f"channel type {self.name!r} (package {self.package} {self.version}) cannot be used: {self.reason}"


class ChannelTypeError(Exception):
    """A channel type's factory failed to build an adaptor from valid settings."""


class ChannelTypes:
    """The installed channel types (a relay_config.schema.ChannelTypeIndex for validation)."""

    def __init__(self, found: Iterable[ChannelType[Any]], broken: Iterable[BrokenPlugin] = ()):
        self.types: dict[str, ChannelType[Any]] = {t.name: t for t in found}
        self.broken: dict[str, BrokenPlugin] = {b.name: b for b in broken}

    def names(self) -> list[str]:
        return sorted(self.types)

    def settings_for(self, type_name: str) -> type[ChannelBase]:
        if type_name in self.types:
            return self.types[type_name].settings
        if type_name in self.broken:
            raise LookupError(self.broken[type_name].message())
        raise LookupError(f"{type_name!r} is not an installed channel type (installed: {', '.join(self.names())})")

    def create(self, settings: ChannelBase, session: aiohttp.ClientSession) -> Adaptor:
        kind = self.types[settings.type]  # the config was validated against these same types
        if not isinstance(settings, kind.settings):
            raise ChannelTypeError(f"channel {settings.name!r}: settings are a {type(settings).__name__}, not {kind.settings.__name__}")
        try:
            return kind.create(settings, session)
        except Exception as e:
            raise ChannelTypeError(
                f"channel {settings.name!r}: channel type {kind.name!r} ({kind.origin}) could not build its adaptor: "
                f"{type(e).__name__}: {e}"
            ) from e

    def describe(self, names: Iterable[str] | None = None) -> str:
        """`a, b (pkg 1.0); c (other 2.0)`: the given (default: all) types by package."""
        by_origin: dict[str, list[str]] = {}
        for name in sorted(set(self.types if names is None else names) & set(self.types)):
            by_origin.setdefault(self.types[name].origin, []).append(name)
        return "; ".join(f"{', '.join(ns)} ({origin})" for origin, ns in by_origin.items())


def _contract_problem(ep: EntryPoint, obj: object) -> str | None:
    if not isinstance(obj, ChannelType):
        return f"{ep.value} is a {type(obj).__name__}, not a relay_adaptors.kernel.registry.ChannelType"
    if obj.name != ep.name:
        return f"the entry point is named {ep.name!r} but its ChannelType is named {obj.name!r}"
    if not (isinstance(obj.settings, type) and issubclass(obj.settings, ChannelBase)):
        return "its settings are not a subclass of relay_config.schema.ChannelBase"
    field = obj.settings.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal or get_args(field.annotation) != (ep.name,):
        return f"its settings model must declare type: Literal[{ep.name!r}]"
    if not callable(obj.create):
        return "its create is not callable"
    return None


def discover(eps: Iterable[EntryPoint] | None = None) -> ChannelTypes:
    """Loads every entry point of the group (default: those installed now)."""
    found: dict[str, ChannelType[Any]] = {}
    broken: dict[str, BrokenPlugin] = {}
    for ep in entry_points(group=GROUP) if eps is None else eps:
        package, version = (ep.dist.name, ep.dist.version) if ep.dist else ("unknown package", "")
        try:
            obj = ep.load()
        except Exception as e:  # a plugin's own failure must not stop Relay, only its channels
            broken[ep.name] = BrokenPlugin(ep.name, package, version, f"loading {ep.value} raised {type(e).__name__}: {e}")
            continue
        problem = _contract_problem(ep, obj)
        if problem is None and ep.name in found:
            problem = f"the type is also registered by {found.pop(ep.name).origin}"
        if problem is not None:
            broken[ep.name] = BrokenPlugin(ep.name, package, version, problem)
        elif ep.name not in broken:
            found[ep.name] = replace(obj, package=package, version=version)
    return ChannelTypes(found.values(), broken.values())


@functools.cache
def installed() -> ChannelTypes:
    """The installed channel types, discovered once per process (installing a plugin takes
    a restart; a config reload does not look again)."""
    return discover()


def make_adaptor(cfg: ChannelBase, session: aiohttp.ClientSession) -> Adaptor:
    return installed().create(cfg, session)
