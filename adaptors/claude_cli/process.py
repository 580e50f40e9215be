"""Running one CLI process: spawn without a shell in its own process group, feed stdin,
read stdout in chunks, keep a bounded stderr tail, and kill the whole group when done."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import tempfile

STDERR_TAIL = 8192
KILL_GRACE = 2.0


class CliProcess:
    def __init__(self, proc: asyncio.subprocess.Process, workdir: str):
        self.proc = proc
        self.workdir = workdir
        self._stderr = collections.deque(maxlen=64)
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr())

    @classmethod
    async def spawn(cls, argv: list[str], env: dict[str, str], stdin: bytes) -> CliProcess:
        """Starts the process in a fresh empty directory (also its HOME); raises OSError."""
        workdir = tempfile.mkdtemp(prefix="relay-cli-")
        env = {**env, "HOME": workdir, "TMPDIR": workdir}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, env=env, start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
        except OSError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self = cls(proc, workdir)
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the process died at once; its exit and stderr tell why
        return self

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr.append(chunk)

    def stderr_tail(self) -> str:
        return b"".join(self._stderr)[-STDERR_TAIL:].decode("utf-8", errors="replace")

    async def read(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(1 << 16)

    async def close(self) -> int | None:
        """Ends the process group (SIGTERM, then SIGKILL after a grace period), reaps the
        process so no zombie stays, and removes its directory."""
        if self.proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), KILL_GRACE)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.proc.wait()
        else:
            self._signal(signal.SIGKILL)  # children left behind by an exited parent
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._stderr_task, 1.0)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
