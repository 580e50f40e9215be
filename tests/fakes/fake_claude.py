"""A stand-in for the `claude` binary, for faults the real CLI cannot be made to show.

Modes (the value after --fake-mode): crash, garbage, bigline, slow, stubborn, env, argv,
orphan, orphan-exit, leaky-result, leaky-status, leaky-stream, noread, silent.
Every process it starts carries --marker TOKEN in its argv so tests can count them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def event(ev: dict[str, Any]) -> None:
    out({"type": "stream_event", "event": ev, "session_id": "s"})


def answer(texts: list[str], pause: float = 0.0) -> None:
    out({"type": "system", "subtype": "init", "session_id": "s", "tools": []})
    event({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": "fake",
                                                "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}})
    event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for t in texts:
        time.sleep(pause)
        event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
    event({"type": "content_block_stop", "index": 0})
    event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}})
    event({"type": "message_stop"})
    out({"type": "result", "subtype": "success", "is_error": False, "api_error_status": None, "result": "".join(texts),
         "stop_reason": "end_turn", "total_cost_usd": 0.0001,
         "usage": {"input_tokens": 5, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "output_tokens": 7}})


def start(text: str) -> None:
    """The beginning of an answer whose first delta is `text`."""
    out({"type": "system", "subtype": "init", "session_id": "s"})
    event({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "usage": {}}})
    event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def grandchild(marker: str) -> int:
    """A process of our group that ignores SIGTERM and, like a daemon, holds none of our
    pipes (so nothing but a signal to the group tells the gateway about it). Returns once it
    ignores SIGTERM."""
    code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.write(1, b'ready'); os.close(1); time.sleep(600)")
    null = subprocess.DEVNULL
    child = subprocess.Popen([sys.executable, "-c", code, "--marker", marker], stdin=null, stdout=subprocess.PIPE, stderr=null)
    assert child.stdout is not None and child.stdout.read() == b"ready"
    return child.pid


def main() -> None:
    argv = sys.argv[1:]
    mode = argv[argv.index("--fake-mode") + 1]
    marker = argv[argv.index("--marker") + 1]
    if mode == "noread":  # never reads its stdin, so a big one fills the pipe
        time.sleep(600)
    stdin = sys.stdin.read()
    if mode == "silent":
        time.sleep(600)
    if mode == "argv":
        path = argv[argv.index("--system-prompt-file") + 1]
        with open(path, encoding="utf-8") as f:
            system = f.read()
        answer([json.dumps({"argv": sys.argv, "system": system, "stdin": stdin, "cwd": os.getcwd(),
                            "file": os.path.abspath(path), "file_mode": os.stat(path).st_mode & 0o777})])
        return
    if mode in ("orphan", "orphan-exit"):
        start(f"pid={grandchild(marker)}")
        if mode == "orphan":
            time.sleep(600)  # SIGTERM ends this one; the grandchild stays unless the group is killed
        return
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    if mode.startswith("leaky"):
        sys.stderr.write(f"debug: authenticating with x-api-key {key}\n")
        sys.stderr.flush()
    if mode == "leaky-result":
        out({"type": "result", "subtype": "error_during_execution", "is_error": True, "api_error_status": None,
             "result": f"Invalid API key {key} for this organisation"})
        return
    if mode == "leaky-status":
        out({"type": "result", "subtype": "success", "is_error": True, "api_error_status": 400,
             "result": f"API Error: 400 key {key} is not allowed to use this model"})
        return
    if mode == "leaky-stream":
        start("Hello")
        event({"type": "error", "error": {"type": "overloaded_error", "message": f"overloaded for key {key}"}})
        return
    if mode == "crash":
        sys.stderr.write("fatal: something broke inside the CLI\n")
        sys.exit(3)
    if mode == "garbage":
        sys.stdout.write("Welcome to the CLI! This is not JSON.\n")
        sys.stdout.flush()
        time.sleep(0.2)
        return
    if mode == "bigline":
        answer(["x" * (2 * 1024 * 1024)])
        return
    if mode == "slow":
        answer([f"tick {i} " for i in range(10)], pause=0.25)
        return
    if mode == "env":
        answer([json.dumps(dict(os.environ), sort_keys=True)])
        return
    if mode == "stubborn":
        # Ignores SIGTERM and leaves a child behind: only killing the whole group ends both.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "--marker", marker])
        out({"type": "system", "subtype": "init", "session_id": "s"})
        event({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "usage": {}}})
        time.sleep(600)


if __name__ == "__main__":
    main()
