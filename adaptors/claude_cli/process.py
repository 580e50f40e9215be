"""Running one CLI process: spawn without a shell in its own process group and private
directory, feed stdin in the background, read stdout in chunks, keep a bounded stderr tail,
and kill the whole group when done."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable

STDERR_TAIL = 8192
KILL_GRACE = 2.0
_GROUP_POLL = 0.05


class PrivateFile(str):
    """An argv item naming one of the `files` of the process's private directory: spawn puts
    that file's absolute path there (the working directory may be elsewhere)."""


class CliProcess:
    def __init__(self, proc: asyncio.subprocess.Process, workdir: str, stdin: bytes, grace: float = KILL_GRACE):
        self.proc = proc
        self.workdir = workdir
        self.grace = grace
        self._stderr = bytearray()  # the last 2 * STDERR_TAIL bytes
        loop = asyncio.get_running_loop()
        self._stderr_task = loop.create_task(self._drain_stderr())
        # In the background, so a child that never reads its stdin is caught by the read
        # timeouts instead of blocking the spawn.
        self._stdin_task = loop.create_task(self._feed(stdin))

    @classmethod
    async def spawn(cls, argv: list[str], env: dict[str, str], stdin: bytes, files: dict[str, bytes] | None = None,
                    grace: float = KILL_GRACE, cwd: str | None = None) -> CliProcess:
        """Starts the process with a fresh private directory (its HOME and TMPDIR, and its
        cwd unless `cwd` is given) holding `files`; raises OSError or ValueError, and leaves
        no directory behind on any failure."""
        workdir = tempfile.mkdtemp(prefix="relay-cli-")  # mode 0700
        try:
            for name, data in (files or {}).items():
                _write_private(os.path.join(workdir, name), data)
            args = [os.path.join(workdir, a) if isinstance(a, PrivateFile) else a for a in argv]
            proc = await asyncio.create_subprocess_exec(
                *args, cwd=cwd or workdir, env={**env, "HOME": workdir, "TMPDIR": workdir}, start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=1 << 20, umask=0o077,  # what the CLI writes (its sessions too) is private
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(proc, workdir, stdin, grace)

    async def _feed(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it died: its exit and stderr tell why
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
            self.proc.stdin.close()

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr += chunk
            del self._stderr[: -2 * STDERR_TAIL]

    def stderr_tail(self, scrub: Callable[[str], str] = str) -> str:
        """The last STDERR_TAIL characters, cut after `scrub` so a cut cannot split a secret
        it would have removed."""
        return scrub(self._stderr.decode("utf-8", errors="replace"))[-STDERR_TAIL:]

    async def read(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(1 << 16)

    async def close(self) -> int | None:
        """Ends the whole process group: SIGTERM, then SIGKILL once the grace period is over
        if any member is still there, whether or not the leader has exited. The leader is
        reaped (no zombie stays) and the directory removed."""
        self._stdin_task.cancel()
        loop = asyncio.get_running_loop()
        until = loop.time() + self.grace
        self._signal(signal.SIGTERM)
        # Polled, not proc.wait(): that also waits for the pipes, which a member may hold
        # open, and would wrongly time out or wrongly succeed. While the leader is not
        # reaped its pid, the group's id, cannot be reused.
        while self._running() and loop.time() < until:
            await asyncio.sleep(_GROUP_POLL)
        if self._running():
            self._signal(signal.SIGKILL)
        # Bounded: a process that left the group could hold the pipes open for ever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), self.grace)
        for task in (self._stdin_task, self._stderr_task):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode

    def _running(self) -> bool:
        return self.proc.returncode is None or self._group_alive()

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _write_private(path: str, data: bytes) -> None:
    """A file only this user can read, created fresh (never through a planted link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
