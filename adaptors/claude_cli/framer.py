"""Sans-IO line framer for the CLI's stdout: chunks in, complete lines out, bounded."""
from __future__ import annotations


class LineTooLong(ValueError):
    pass


class LineFramer:
    def __init__(self, max_line: int = 16 * 1024 * 1024):
        self.max_line = max_line
        self._parts: list[bytes] = []
        self._size = 0

    def push(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        while chunk:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._keep(chunk)
                break
            head, chunk = chunk[:nl], chunk[nl + 1 :]
            self._keep(head)
            line = b"".join(self._parts)
            self._parts, self._size = [], 0
            if line.strip():
                lines.append(line)
        return lines

    def flush(self) -> list[bytes]:
        """The last line when the stream ended without a newline."""
        line = b"".join(self._parts)
        self._parts, self._size = [], 0
        return [line] if line.strip() else []

    def _keep(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self.max_line:
            raise LineTooLong(f"an output line is longer than {self.max_line} bytes")
        self._parts.append(piece)
