"""Removing the channel's secrets from everything this adaptor logs or returns (pure).

The CLI's output, its stderr and its error text may quote the key it was given; none of that
reaches a client or a log line unscrubbed, whatever process-wide filter is (or is not) set up."""
from __future__ import annotations

from ..kernel.errors import RelayError

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values would blank out ordinary words


class Scrubber:
    def __init__(self, *secrets: str | None):
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for s in self.secrets:
            value = value.replace(s, REDACTED)
        return value

    def error(self, err: RelayError) -> RelayError:
        """The same error with every client-visible field scrubbed (in place)."""
        err.message = self.text(err.message)
        err.args = (err.message,)
        err.type = self.text(err.type)
        if err.code is not None:
            err.code = self.text(err.code)
        if err.param is not None:
            err.param = self.text(err.param)
        err.headers = {k: self.text(v) for k, v in err.headers.items()}
        return err
