"""One redaction step for every configured secret.

A `Redactor` is pure: built from a set of secret strings, it replaces each occurrence of any of
them with `[redacted]` in one regex pass. The process holds one current instance
(`current()`), swapped whenever a runtime is built from a config (start and every reload);
error serialization (`RelayError.body`), in-stream error frames and the logging filter all
read it, so a secret has one place to be listed and no path to skip.

Secrets shorter than `MIN_SECRET_LEN` are not redacted (replacing every "adm" or "k1" in logs
and answers would mangle them and tell an attacker the value); they are reported so the
loader's caller can warn.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from relay_config.schema import RelayConfig

MIN_SECRET_LEN = 8
MARK = "[redacted]"


class Redactor:
    """Replaces every known secret in a string. Immutable; combine with `union`."""

    __slots__ = ("secrets", "_pattern")

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LEN)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(self.secrets, key=lambda s: (-len(s), s))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MARK, text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def deep(self, value: Any) -> Any:
        """Strings inside dicts, lists and tuples redacted; everything else as it was."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        return value

    def union(self, other: Redactor) -> Redactor:
        return self if other.secrets <= self.secrets else Redactor(self.secrets | other.secrets)


@dataclass(frozen=True, slots=True)
class ConfigSecrets:
    values: list[str]
    too_short: list[str]  # YAML paths of operator secrets too short to redact


def config_secrets(config: RelayConfig) -> ConfigSecrets:
    """Every secret a config holds: channel keys and every header value (some carry tokens),
    tenant keys, the admin key, the metrics token and the store URL's password.

    Only the operator's own secrets (channel keys, admin key, metrics token) are reported when
    too short: a short header value is usually not a secret at all, and a short tenant key is
    that tenant's weakness (the demo config ships one)."""
    values: list[str] = []
    too_short: list[str] = []

    def operator(where: str, value: str | None) -> None:
        if value:
            values.append(value)
            if len(value) < MIN_SECRET_LEN:
                too_short.append(where)

    for i, ch in enumerate(config.channels):
        # Read by name rather than by channel type, so a new type's key is covered unasked.
        operator(f"channels[{i}].api_key", getattr(ch, "api_key", None))
        values += [v for v in (getattr(ch, "headers", None) or {}).values() if v]
    for t in config.tenants:
        values += [k for k in t.keys if k]
    operator("server.admin_key", config.server.admin_key)
    operator("server.metrics_token", config.server.metrics_token)
    # A store error may quote its URL (redis://:password@host).
    operator("store.url password", _password(config.store.url))
    return ConfigSecrets(values, too_short)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


_current = Redactor()
log = logging.getLogger("relay")


def current() -> Redactor:
    return _current


def install(config: RelayConfig) -> Redactor:
    """Adds the config's secrets to the process-wide redactor and returns it.

    Secrets are only ever added: a key rotated out by a reload can still be quoted by a request
    that started before it, and redacting a retired secret costs nothing."""
    global _current
    found = config_secrets(config)
    for where in found.too_short:
        log.warning("%s is shorter than %d characters: it cannot be redacted from logs and errors; use a longer value",
                    where, MIN_SECRET_LEN)
    _current = _current.union(Redactor(found.values))
    return _current


class RedactingFilter(logging.Filter):
    """Scrubs every record that reaches a handler: message, arguments, structured fields,
    exception and stack text. Installed on handlers (not loggers) so records from every
    logger, aiohttp's included, pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        r = current()
        if r._pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg, record.args = r(message), None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = r.deep(fields)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # The text is kept, the live exception dropped: formatters would print it again.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = r(record.exc_text)
        if record.stack_info:
            record.stack_info = r(record.stack_info)
        return True
