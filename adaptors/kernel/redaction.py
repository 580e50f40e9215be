"""One redaction step for every configured secret.

A `Redactor` is pure: built from a set of secret strings, it replaces each occurrence of any of
them with `[redacted]`. The process holds one current instance
(`current()`), swapped whenever a runtime is built from a config (start and every reload);
error serialization (`RelayError.body`), in-stream error frames and the logging filter all
read it, so a secret has one place to be listed and no path to skip.

Secrets shorter than `MIN_SECRET_LEN` are not redacted (replacing every "adm" or "k1" in logs
and answers would mangle them and tell an attacker the value); `install` warns about short
operator secrets (channel keys, admin key, metrics token).
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
_SECRET_FIELD = re.compile(r"(key|token|secret|password)$")
MARK = "[redacted]"


class Redactor:
    """Replaces every known secret in a string (leftmost, longest first). Immutable.

    A few secrets: one regex alternation (C speed). Many (thousands of tenant keys): `re`
    tries every alternative at every position, so instead only the runs of characters that
    occur in some secret are looked at, and inside a run only positions whose first
    MIN_SECRET_LEN characters begin some secret (a dict lookup each)."""

    __slots__ = ("secrets", "_pattern", "_runs", "_by_prefix")

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_SECRET_LEN)
        ordered = sorted(self.secrets, key=lambda s: (-len(s), s))  # longest first
        self._pattern: re.Pattern[str] | None = None
        self._runs: re.Pattern[str] | None = None
        self._by_prefix: dict[str, list[str]] = {}
        if len(ordered) <= _FEW:
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            return
        self._runs = re.compile(f"[{_char_class(set().union(*ordered))}]{{{MIN_SECRET_LEN},}}")
        for secret in ordered:
            self._by_prefix.setdefault(secret[:MIN_SECRET_LEN], []).append(secret)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            return self._pattern.sub(MARK, text)
        if self._runs is not None:
            return self._runs.sub(self._scrub_run, text)
        return text

    def _scrub_run(self, match: re.Match[str]) -> str:
        run, n, prefixes = match.group(), MIN_SECRET_LEN, self._by_prefix
        starts = [i for i in range(len(run) - n + 1) if run[i:i + n] in prefixes]
        if not starts:
            return run
        out: list[str] = []
        last = 0
        for i in starts:
            if i < last:
                continue  # inside a secret already replaced
            secret = next((s for s in prefixes[run[i:i + n]] if run.startswith(s, i)), None)
            if secret is not None:
                out += (run[last:i], MARK)
                last = i + len(secret)
        out.append(run[last:])
        return "".join(out)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def deep(self, value: Any) -> Any:
        """Strings inside dicts, lists and tuples redacted; everything else as it was."""
        if not self.secrets:
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


_FEW = 16  # past this many secrets, one alternation costs more than the run scan


def _char_class(chars: set[str]) -> str:
    """The characters as a regex class body with consecutive code points as ranges (a class
    of single characters is matched far more slowly by `re`)."""
    points, out, i = sorted(map(ord, chars)), [], 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        out.append(re.escape(chr(points[i])) + (f"-{re.escape(chr(points[j]))}" if j > i else ""))
        i = j + 1
    return "".join(out)


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
        # Read by field name rather than by channel type, so a new type's (or a plugin's)
        # `api_key`, `token`, `..._secret` or `password` is covered unasked.
        for name in type(ch).model_fields:
            value = getattr(ch, name)
            if isinstance(value, str) and _SECRET_FIELD.search(name):
                operator(f"channels[{i}].{name}", value)
            elif isinstance(value, str) and name.endswith("_url"):  # https://user:password@proxy
                operator(f"channels[{i}].{name} password", _password(value))
        values += [v for v in (getattr(ch, "headers", None) or {}).values() if isinstance(v, str) and v]
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
        if not r.secrets:
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
