"""The YAML schema: every key a user may write, and nothing else (extra="forbid")."""
from __future__ import annotations

import fnmatch
import hashlib
import re
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    """Seconds. `idle` is the longest gap allowed between upstream chunks once streaming."""

    connect: float = Field(10, gt=0)
    first_byte: float = Field(60, gt=0)
    idle: float = Field(60, gt=0)
    total: float = Field(600, gt=0)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sse_keepalive: float = Field(15, gt=0)  # seconds of silence before a `: keepalive` comment
    drain_seconds: float = Field(30, ge=0)  # how long SIGTERM waits for in-flight requests
    admin_key: str | None = None  # guards /admin/* (reload, channel state); unset = /admin/* is 404 (disabled)
    metrics_token: str | None = None  # when set, GET /metrics needs it as a Bearer token
    # host:port of the operations listener (/metrics, /admin/*, probes); null = serve them on
    # the public listener as well. Loopback by default: tenants never see them.
    ops_listen: str | None = "127.0.0.1:9091"

    @field_validator("ops_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value
    access_log: bool = True  # one JSON line per request
    workers: int = Field(1, ge=1, le=64)  # processes sharing the port (SO_REUSEPORT)
    # Client connections (seconds; read at start). A request's headers must arrive within
    # header_read_timeout of its first byte, its body within body_read_timeout after them;
    # an idle keep-alive connection closes after keepalive_timeout; past max_connections
    # open connections (per process) a new one gets a 503 and is closed.
    header_read_timeout: float = Field(10, gt=0)
    body_read_timeout: float = Field(60, gt=0)
    keepalive_timeout: float = Field(75, gt=0)
    max_connections: int = Field(10_000, ge=1)  # LLM streams are long-lived: room for many, bounded below open files


def split_host_port(text: str) -> tuple[str, int]:
    """'127.0.0.1:9091', '[::1]:9091' or ':9091' (all interfaces) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:9091)")
    return host.strip("[]") or "0.0.0.0", int(port)


HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class ModelLimits(Strict):
    rpm: int | None = Field(None, ge=1)  # requests per minute
    tpm: int | None = Field(None, ge=1)  # tokens (input + output) per minute
    max_concurrent: int | None = Field(None, ge=1)  # requests in flight


class Budget(Strict):
    tokens: int = Field(ge=1)
    period: Literal["day", "month"] = "month"  # calendar periods, UTC


class TenantLimits(ModelLimits):
    budget: Budget | None = None  # hard stop when spent
    models: dict[str, ModelLimits] = {}  # extra limits for one public model


class TenantConfig(Strict):
    name: str = Field(min_length=1)
    keys: list[str] = []
    key_sha256: list[str] = []
    models: list[str] | None = None  # glob allowlist of public model names; None = all
    limits: TenantLimits = TenantLimits()

    @field_validator("keys")
    @classmethod
    def _keys_not_empty(cls, keys: list[str]) -> list[str]:
        if any(not k for k in keys):
            raise ValueError("a key is empty (is its environment variable set to an empty value?)")
        return keys

    @field_validator("key_sha256")
    @classmethod
    def _hex_digests(cls, digests: list[str]) -> list[str]:
        for d in digests:
            if not HEX64.match(d):
                raise ValueError("each key_sha256 entry must be 64 hex characters")
        return [d.lower() for d in digests]

    @model_validator(mode="after")
    def _has_a_key(self) -> TenantConfig:
        if not self.keys and not self.key_sha256:
            raise ValueError("a tenant needs at least one of keys or key_sha256")
        return self

    def may_use(self, model: str) -> bool:
        return self.models is None or any(fnmatch.fnmatchcase(model, p) for p in self.models)


def _list_means_same_name(value: object) -> object:
    return {m: m for m in value} if isinstance(value, list) and all(isinstance(m, str) for m in value) else value


# public model name -> upstream model name; a YAML list means "the same name upstream"
ModelMap = Annotated[dict[str, str], BeforeValidator(_list_means_same_name)]


class ChannelBase(Strict):
    """What every channel has, whatever its type. A channel type's settings model subclasses
    this with `type: Literal["<its name>"]` and its own keys (see adaptors/registry.py)."""

    type: str
    name: str = Field(min_length=1)
    models: ModelMap
    timeout: Timeouts = Timeouts()
    priority: int = 0  # lower is tried first
    weight: float = Field(1, gt=0)  # share of traffic among channels of one priority

    @field_validator("models")
    @classmethod
    def _not_empty(cls, models: dict[str, str]) -> dict[str, str]:
        if not models:
            raise ValueError("a channel must serve at least one model")
        return models


class OpenAIChannel(ChannelBase):
    type: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    headers: dict[str, str] = {}
    # What the upstream speaks: "responses" for servers with only /v1/responses (Relay converts
    # chat requests to Responses and back); /v1/responses itself then goes there natively.
    api: Literal["chat", "responses"] = "chat"
    responses: Literal["bridge", "native"] = "bridge"

    @model_validator(mode="before")
    @classmethod
    def _responses_only_is_native(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("api") != "responses":
            return data
        if data.get("responses", "native") != "native":
            raise ValueError("`api: responses` means the upstream has no chat endpoint, so Responses requests go to it "
                             "natively; remove `responses: bridge` (or set `responses: native`)")
        return {**data, "responses": "native"}


class AnthropicChannel(ChannelBase):
    type: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key: str | None = None
    anthropic_version: str = "2023-06-01"
    betas: list[str] = []  # -> anthropic-beta header
    default_max_tokens: int = Field(4096, ge=1)  # Anthropic requires max_tokens


class ClaudeCliChannel(ChannelBase):
    """The Claude Code CLI (`claude -p`), one process per request."""

    type: Literal["claude_cli"]
    command: str = "claude"  # path or name on PATH
    api_key: str | None = None  # passed to the child as ANTHROPIC_API_KEY
    base_url: str | None = None  # passed as ANTHROPIC_BASE_URL
    max_concurrent: int = Field(4, ge=1, le=256)  # processes at once for this channel
    queue_timeout: float = Field(30, ge=0)  # seconds a request may wait for a process slot, then 429
    extra_args: list[str] = []  # appended to the command line
    # Keep the CLI's own session per tenant, so a stored response's follow-up resumes it
    # (`--resume`) instead of replaying the transcript. Sessions live under sessions_dir
    # (default: relay-cli-sessions-<uid> in the system temp dir), one 0700 directory per
    # tenant named by a hash; files older than sessions_ttl seconds are swept.
    sessions: bool = False
    sessions_dir: str | None = None
    sessions_ttl: float = Field(30 * 86400, gt=0)

    @field_validator("sessions_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # Relative would mean "relative to wherever relay was started", which moves.
        if value is not None and not value.startswith("/"):
            raise ValueError("sessions_dir must be an absolute path")
        return value


class MockChannel(ChannelBase):
    """Built-in, no network: deterministic answers for demos and load tests of Relay itself."""

    type: Literal["mock"]
    stream_chunks: int = Field(8, ge=1, le=10_000)
    chunk_delay: float = Field(0.0, ge=0, le=60)
    reply: str | None = None  # fixed answer text; default derives one from the prompt


class ChannelTypeIndex(Protocol):
    """The installed channel types, as the schema sees them: a settings model per type name.
    Given at validation time (`context={CHANNEL_TYPES_CONTEXT: ...}`, see relay_config.loader) by
    relay_adaptors.kernel.registry, so the schema never imports a plugin and a plugin may import it."""

    def names(self) -> list[str]: ...

    def settings_for(self, type_name: str) -> type[ChannelBase]:
        """Raises LookupError, with a message for the config's author, when the type is unknown
        or its plugin is broken."""
        ...


CHANNEL_TYPES_CONTEXT = "relay.channel_types"  # the validation-context key holding a ChannelTypeIndex


def _error(message: str, loc: tuple[str, ...] = ()) -> ValidationError:
    # "{message}" keeps braces in a plugin's exception text from being read as a template.
    detail = InitErrorDetails(type=PydanticCustomError("channel_type", "{message}", {"message": message}), loc=loc, input=None)
    return ValidationError.from_exception_data("channel", [detail])


def _channel_of_its_type(value: Any, info: ValidationInfo) -> ChannelBase:
    """Validates one channel in two steps: its `type` picks the settings model, which then
    validates the whole entry (its error locations stay relative to the entry)."""
    if isinstance(value, ChannelBase):
        return value
    index: ChannelTypeIndex | None = (info.context or {}).get(CHANNEL_TYPES_CONTEXT)
    if index is None:
        raise RuntimeError("channels need the installed channel types: load configs through relay_config.loader")
    if not isinstance(value, dict):
        raise _error("a channel must be a mapping")
    if "type" not in value:
        raise _error(f"missing 'type' (one of {', '.join(index.names())})")
    try:
        model = index.settings_for(str(value["type"]))
    except LookupError as e:
        raise _error(str(e.args[0] if e.args else e), ("type",)) from None
    try:
        return model.model_validate(value, context=info.context)
    except ValidationError:
        raise
    except Exception as e:  # a plugin's own validator failed: its bug, reported as this entry's error
        raise _error(f"channel type {value['type']!r} failed while checking its settings: {type(e).__name__}: {e}") from None


# One channel entry, of any installed type: the instance is that type's settings model.
ChannelConfig = Annotated[SerializeAsAny[ChannelBase], PlainValidator(_channel_of_its_type)]


class ResponsesConfig(Strict):
    # Hosted tool types (web_search, file_search, ...) no chat upstream can run:
    # drop them and say so in x-relay-dropped-tools, or reject the request with a 400.
    unsupported_tools: Literal["drop", "reject"] = "drop"
    retention: float = Field(30 * 86400, gt=0)  # seconds a stored response or conversation is kept
    max_stored_bytes: int = Field(16 << 20, ge=1024)  # one stored response (its history included) or conversation
    max_background: int = Field(64, ge=1)  # background responses one tenant may have running on one instance


class CooldownConfig(Strict):
    failures: int = Field(3, ge=1)  # consecutive failures that open the breaker
    seconds: float = Field(30, gt=0)  # how long it stays open (or the upstream's retry-after)


class RouterConfig(Strict):
    max_attempts: int = Field(3, ge=1, le=10)  # channels tried for one request
    cooldown: CooldownConfig = CooldownConfig()


STORE_SCHEMES = ("sqlite:///", "redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "memory://")


class StoreConfig(Strict):
    # sqlite:///path (default, one machine) | redis://host:port/db (many instances) |
    # redis+cluster://host:port (a Redis Cluster; the host is one seed node) | memory:// (tests)
    url: str = "sqlite:///./relay.db"
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"  # when the store is unreachable

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(STORE_SCHEMES):
            raise ValueError(f"store.url must start with {', '.join(STORE_SCHEMES[:-1])} or {STORE_SCHEMES[-1]}")
        if url.startswith(("redis+cluster://", "rediss+cluster://")):
            parts = urlsplit(url)  # messages never quote the URL: it may hold a password
            if not parts.hostname:
                raise ValueError("store.url: a Redis Cluster URL names one of its nodes (redis+cluster://host:port)")
            if parts.path.strip("/") not in ("", "0"):
                raise ValueError("store.url: a Redis Cluster has only database 0; drop the /<db> path")
        return url


class RelayConfig(Strict):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    router: RouterConfig = RouterConfig()
    responses: ResponsesConfig = ResponsesConfig()
    aliases: dict[str, str] = {}  # extra public name -> public model name
    tenants: list[TenantConfig] = Field(min_length=1)
    channels: list[ChannelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self, info: ValidationInfo) -> RelayConfig:
        # The loader reports these itself, all of them with their lines (see cross_entry_issues).
        if not (info.context or {}).get("cross_entry_checked"):
            issues = cross_entry_issues(self.model_dump())
            if issues:
                raise ValueError("; ".join(message for _, message in issues))
        return self

    def public_models(self, with_aliases: bool = True) -> list[str]:
        seen: dict[str, None] = {}
        for ch in self.channels:
            for m in ch.models:
                seen.setdefault(m, None)
        if with_aliases:
            seen.update(dict.fromkeys(self.aliases))
        return list(seen)


Loc = tuple[str | int, ...]


def cross_entry_issues(data: Any) -> list[tuple[Loc, str]]:
    """Errors that span entries, each at the YAML path of the entry that repeats or dangles.

    Works on the raw (interpolated) data, tolerating entries that are themselves invalid, so
    one run reports these together with every per-field error."""
    if not isinstance(data, dict):
        return []
    issues: list[tuple[Loc, str]] = []
    tenants, channels = _entries(data.get("tenants")), _entries(data.get("channels"))
    for kind, section, items in (("tenant", "tenants", tenants), ("channel", "channels", channels)):
        first: dict[str, int] = {}
        for i, item in items:
            name = item.get("name")
            if isinstance(name, str) and name:
                if name in first:
                    issues.append(((section, i, "name"), f"duplicate {kind} name {name!r} (first at {section}[{first[name]}])"))
                first.setdefault(name, i)
    owner: dict[str, tuple[str, int]] = {}
    for i, t in tenants:
        name = str(t.get("name"))
        for field in ("keys", "key_sha256"):
            values = t.get(field)
            for j, key in enumerate(values if isinstance(values, list) else []):
                if not isinstance(key, str) or not key:
                    continue
                digest = hashlib.sha256(key.encode()).hexdigest() if field == "keys" else key.lower()
                prev = owner.setdefault(digest, (name, i))
                if prev[1] != i:
                    issues.append((("tenants", i, field, j), f"tenants {prev[0]!r} and {name!r} share an API key (tenants[{prev[1]}])"))
    server = data.get("server")
    if isinstance(server, dict) and isinstance(server.get("ops_listen"), str):
        try:
            ops_port = split_host_port(server["ops_listen"])[1]
        except ValueError:
            ops_port = None  # reported by the field's own check
        if ops_port and str(ops_port) == str(server.get("port", ServerConfig.model_fields["port"].default)):  # "8080" from ${VAR}
            issues.append((("server", "ops_listen"), f"the operations listener needs a port of its own, not the public port {ops_port} "
                                                     "(or ops_listen: null to serve both on one listener)"))
    served: set[str] = set()
    for _, ch in channels:
        models = ch.get("models")
        if isinstance(models, dict):
            served.update(str(m) for m in models)
        elif isinstance(models, list):
            served.update(str(m) for m in models)
    aliases = data.get("aliases")
    for alias, target in (aliases.items() if isinstance(aliases, dict) else []):
        if alias in served:
            issues.append((("aliases", alias), f"alias {alias!r} is also a model a channel serves"))
        elif target not in served:
            issues.append((("aliases", alias), f"alias {alias!r} points to {target!r}, which no channel serves"))
    return issues


def _entries(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []
