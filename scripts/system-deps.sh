#!/usr/bin/env bash
# Installs the system programs the test suite (or, with "bench", the benchmark) runs for real.
# Each is installed only when missing, so repeated runs cost nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }

want redis-server redis-server   # the Redis store's tests
want promtool prometheus         # checks deploy/prometheus/*.yml

if [ "${1:-}" = bench ]; then
  want nginx nginx; want wrk wrk; want taskset util-linux; want valgrind valgrind  # valgrind: instructions per request
fi

want npm npm                     # installs the claude and codex CLIs below

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The real Claude Code CLI, pinned, for the claude_cli channel's tests (local to the repo).
CLAUDE_CODE_VERSION=2.1.197
if [ "${1:-}" != bench ] && ! "$here/.tools/node_modules/.bin/claude" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION "; then
  npm install --prefix "$here/.tools" --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null
fi

# The real Codex CLI, pinned, for tests/test_codex_cli.py (a 172 MB download: its musl binary).
CODEX_VERSION=0.171.0
if [ "${1:-}" != bench ] && ! "$here/.tools/node_modules/.bin/codex" --version 2>/dev/null | grep -qx "codex-cli $CODEX_VERSION"; then
  npm install --prefix "$here/.tools" --no-audit --no-fund --loglevel=error --save-exact "@openai/codex@$CODEX_VERSION" >/dev/null
fi
