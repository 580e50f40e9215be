"""A stand-in for the `claude` binary, for faults the real CLI cannot be made to show.

Modes (the value after --fake-mode): crash, garbage, bigline, slow, stubborn, env.
Every process it starts carries --marker TOKEN in its argv so tests can count them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def out(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def event(ev: dict) -> None:
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


def main() -> None:
    argv = sys.argv[1:]
    mode = argv[argv.index("--fake-mode") + 1]
    marker = argv[argv.index("--marker") + 1]
    sys.stdin.read()
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
