"""Where the CLI keeps its sessions for `sessions: true` channels: one private directory per
owner (tenant), so one owner's session can only ever be resumed by that owner.

The CLI stores a session as `$CLAUDE_CONFIG_DIR/projects/<its working directory, mangled>/
<session id>.jsonl`, and `--resume` looks only under the directory of the current working
directory. Each owner therefore gets its own config directory and its own fixed, empty
working directory; an id that is not in the owner's config directory cannot be resumed, so
the request is replayed in full instead. Directory names are a hash of the owner: no
tenant name ever becomes a path. A follow-up resumes a fresh copy of its session (`fork`),
so every stored answer stays a point a conversation can go on from, and a session is
offered for resuming only once the CLI has saved its turn whole (`saved_answer`)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# The CLI's session ids are lowercase UUIDs; nothing else may reach argv or a path.
SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OWNER_DIR = re.compile(r"[0-9a-f]{32}")  # what owner_dir_name makes; the sweep touches nothing else
SWEEP_EVERY = 3600.0  # seconds between two sweeps of one adaptor
CONFIG, WORK = "config", "work"


def valid_session_id(value: object) -> bool:
    return isinstance(value, str) and SESSION_ID.fullmatch(value) is not None


def owner_dir_name(owner: str) -> str:
    return hashlib.sha256(b"relay claude_cli session owner\x00" + owner.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def default_root() -> str:
    # Per user: in a shared temp dir another user's directory of that name is refused, not used.
    return os.path.join(tempfile.gettempdir(), f"relay-cli-sessions-{os.geteuid()}")


class UnsafeDirectory(OSError):
    """The sessions directory is not ours alone (another owner, or a link where a directory
    of ours should be)."""


@dataclass(frozen=True, slots=True)
class OwnerDirs:
    config: str  # the CLI's CLAUDE_CONFIG_DIR: its sessions land here
    work: str  # the CLI's working directory, fixed per owner so --resume finds the sessions

    def session_file(self, session_id: str) -> str | None:
        """The file of this owner's session `session_id` (a regular file, not a link), if any."""
        if not valid_session_id(session_id):
            return None
        try:
            entries = list(os.scandir(os.path.join(self.config, "projects")))
        except OSError:
            return None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                path = os.path.join(entry.path, f"{session_id}.jsonl")
                try:
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        return path
                except OSError:
                    continue
        return None

    def fork(self, session_id: str) -> Fork | None:
        """A copy of the session under a new id, next to it, for the CLI to resume and append
        to; None when this owner has no such session. The session itself stays as it was, so
        the answer it ends with can still be continued another way. (The CLI's own
        --fork-session sometimes leaves the new turn out of the copy it saves.)"""
        src = self.session_file(session_id)
        if src is None:
            return None
        new = str(uuid.uuid4())
        try:
            fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # removed meanwhile
        with open(fd_in, "rb") as fin:
            data = fin.read()
        fd_out = os.open(os.path.join(os.path.dirname(src), f"{new}.jsonl"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd_out, "wb") as fout:
            fout.write(data)
        return Fork(new, _turns(data)[0])

    def saved_answer(self, session_id: str, users_before: int) -> bool:
        """Whether the CLI saved this run's turn whole. The pinned CLI, on a busy machine,
        sometimes exits cleanly having saved a session without the user's turn (or none at
        all); resuming that would answer a conversation with a turn missing. Whole means: each
        entry's parent is in the file, there are more user entries than before the run, and
        the last of them is followed by an answer."""
        path = self.session_file(session_id)
        if path is None:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, "rb") as f:
                users, whole = _turns(f.read())
        except OSError:
            return False
        return whole and users > users_before

    def discard(self, session_id: str) -> None:
        """Removes a copy `fork` made that no run saved an answer to."""
        path = self.session_file(session_id)
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


@dataclass(frozen=True, slots=True)
class Fork:
    session_id: str  # the copy's
    users: int  # user entries in it: the run that resumes it must add one


def _turns(data: bytes) -> tuple[int, bool]:
    """(user entries, whether the conversation is whole and ends with an answer) of a
    session file in the CLI's format: JSON lines, conversation entries typed user or
    assistant, each with a `uuid` and the `parentUuid` it follows."""
    users, last, seen, parents = 0, None, set(), []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            return users, False
        if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant"):
            continue
        last = entry["type"]
        users += last == "user"
        seen.add(entry.get("uuid"))
        parents.append(entry.get("parentUuid"))
    whole = last == "assistant" and all(p is None or p in seen for p in parents)
    return users, whole


class SessionDirs:
    """The root holding every owner's directory, and its retention sweep."""

    def __init__(self, root: str, ttl: float, clock: Callable[[], float] = time.time):
        self.root = root
        self.ttl = ttl
        self.clock = clock  # wall time, as file mtimes are; injectable for tests
        self._last_sweep: float | None = None

    def for_owner(self, owner: str) -> OwnerDirs:
        """The owner's directories, created 0700 when missing. Raises OSError (UnsafeDirectory
        when what is there is not ours alone)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        st = os.stat(self.root)  # a configured root may be a link to the real place
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise UnsafeDirectory(f"{self.root} is not a directory owned by this user")
        if st.st_mode & 0o077:
            os.chmod(self.root, 0o700)
        base = os.path.join(self.root, owner_dir_name(owner))
        for path in (base, os.path.join(base, CONFIG), os.path.join(base, WORK)):
            _private_dir(path)
        return OwnerDirs(os.path.join(base, CONFIG), os.path.join(base, WORK))

    def sweep_due(self) -> bool:
        """True at most once per SWEEP_EVERY (the first call included); the caller sweeps."""
        now = self.clock()
        if self._last_sweep is not None and now - self._last_sweep < SWEEP_EVERY:
            return False
        self._last_sweep = now
        return True

    def sweep(self) -> int:
        """Removes every file in the owners' config directories not written for `ttl` seconds
        (sessions and whatever else the CLI keeps there); returns how many. Directories stay,
        so a run starting meanwhile never loses its working directory."""
        cutoff = self.clock() - self.ttl
        removed = 0
        for path in self._owner_files():
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except OSError:
                continue  # gone already, or not ours to remove
        return removed

    def _owner_files(self) -> Iterator[str]:
        try:
            owners = [e.path for e in os.scandir(self.root) if OWNER_DIR.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for owner in owners:
            for folder, _dirs, files in os.walk(os.path.join(owner, CONFIG)):  # never follows links
                for name in files:
                    yield os.path.join(folder, name)


def _private_dir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} is not a directory owned by this user")
