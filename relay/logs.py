"""Structured logs: one JSON object per line. Keys, prompts and completions are never logged,
and every record passes the redaction filter (configured secrets become `[redacted]`)."""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from relay_adaptors.kernel.redaction import RedactingFilter

access = logging.getLogger("relay.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # set (and scrubbed) by the redaction filter
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level: str, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    # On the handler, so records of every logger (aiohttp.server, aiohttp.access, ...) pass it.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log_request(fields: dict[str, Any]) -> None:
    access.info("request", extra={"fields": fields})
