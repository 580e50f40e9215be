"""Chat request -> the CLI's command line, environment, stdin and private files (pure).

Nothing the client sent reaches the command line: argv is the channel's configuration plus
fixed flags (and, when resuming, a session id of UUID shape), the system prompt goes in a
file in the process's private directory (`--system-prompt-file`) and the conversation goes
on stdin as one stream-json user message."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..anthropic.request import content_blocks
from ..kernel import jsonfast
from ..kernel.chat import max_output_tokens
from ..kernel.content import content_text
from ..kernel.errors import bad_request
from .process import PrivateFile
from .sessions import valid_session_id

DEFAULT_SYSTEM = "You are a helpful assistant."
# Sampling and length parameters the CLI has no flag for: left out, and named in
# x-relay-ignored-params so the client knows.
IGNORED = ("temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias",
           "service_tier", "metadata", "user", "store", "parallel_tool_calls")
EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
CHANNEL = "claude_cli channels"
SYSTEM_PROMPT_FILE = PrivateFile("system-prompt.txt")  # in the process's own directory
# Prompt material per request (system prompt plus the stdin message, UTF-8, images as base64):
# half of Anthropic's 32 MB request limit, so the CLI's own additions still fit.
MAX_PROMPT_BYTES = 16 * 1024 * 1024
MAX_PARAM = 200  # characters of a param path Relay reflects back


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: bytes
    files: dict[str, bytes] = field(default_factory=dict)  # name in the private directory -> content
    ignored: list[str] = field(default_factory=list)


def _nul_param(value: Any, path: str) -> str | None:
    """The path of the first string under `value` (in document order) that holds a NUL.
    Iterative, so no nesting depth a client sends can exhaust the stack."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, dict):
            stack.extend(reversed([(v, f"{where}.{k}") for k, v in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([(v, f"{where}[{i}]") for i, v in enumerate(node)]))
    return None


def check(req: dict[str, Any]) -> None:
    """What the CLI cannot do is a 400 naming the param, never a silent change of the answer."""
    if req.get("tools") or req.get("functions"):
        raise bad_request(f"{CHANNEL} cannot call client-defined tools; use an anthropic channel for function calling.",
                          param="tools" if req.get("tools") else "functions")
    if req.get("tool_choice") not in (None, "none", "auto"):
        raise bad_request(f"{CHANNEL} cannot call client-defined tools.", param="tool_choice")
    if (req.get("n") or 1) > 1:
        raise bad_request(f"{CHANNEL} return one choice; 'n' must be 1.", param="n")
    if req.get("logprobs") or req.get("top_logprobs"):
        raise bad_request(f"{CHANNEL} cannot return logprobs.", param="logprobs")
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        raise bad_request(f"{CHANNEL} cannot enforce response_format {fmt['type']}; ask for JSON in the prompt, "
                          "or use an anthropic channel.", param="response_format")
    # A NUL is cut off wherever a C string carries the text (it was, on argv under uvloop):
    # refuse it rather than risk a silently changed prompt.
    nul = _nul_param(req.get("messages"), "messages")
    if nul:
        nul = nul if len(nul) <= MAX_PARAM else nul[: MAX_PARAM - 3] + "..."  # reflected: bounded
        raise bad_request(f"Invalid value for '{nul}': {CHANNEL} cannot take NUL (\\u0000) characters.",
                          param=nul, code="invalid_value")
    for name in ("max_completion_tokens", "max_tokens"):
        value = req.get(name)
        if value is not None and (type(value) is not int or value < 1):
            raise bad_request(f"Invalid value for '{name}': expected a positive integer.", param=name, code="invalid_value")


def _render_turn(msg: dict[str, Any]) -> str:
    role = msg.get("role")
    if role == "assistant":
        text = content_text(msg.get("content"))
        calls = [f"[called {c['function']['name']}({c['function'].get('arguments', '')})]" for c in msg.get("tool_calls") or ()]
        return "\n".join(x for x in [text, *calls] if x)
    if role == "tool":
        return f"[result of {msg.get('tool_call_id', 'a tool call')}]: {content_text(msg.get('content'))}"
    return content_text(msg.get("content"))


def user_message(messages: list[dict[str, Any]], start: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, content blocks of the single user turn the CLI gets).

    One user turn goes as it is. A longer conversation is written out as a transcript in
    order, followed by the last user turn; images of every user turn are kept as blocks.
    With `start` (a resumed session has seen the turns before it) only the turns from there
    are sent; the system prompt is always the whole request's."""
    system = "\n\n".join(content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")]
    if not turns or turns[-1][1].get("role") != "user":
        raise bad_request(f"{CHANNEL} need the conversation to end with a user message.", param="messages")
    turns = [(i, m) for i, m in turns if i >= start]
    blocks: list[dict[str, Any]] = []
    if len(turns) > 1:
        lines = ["Conversation so far:" if not start else "The conversation went on:"]
        for i, m in turns[:-1]:
            lines.append(f"<{m['role']}>\n{_render_turn(m)}\n</{m['role']}>")
            if m["role"] == "user" and not isinstance(m.get("content"), str):
                blocks += [b for b in content_blocks(m["content"], f"messages[{i}].content") if b["type"] != "text"]
        lines.append("Reply to the last user message:")
        blocks.insert(0, {"type": "text", "text": "\n\n".join(lines)})
    last_index, last = turns[-1]
    blocks += content_blocks(last.get("content"), f"messages[{last_index}].content")
    return system or DEFAULT_SYSTEM, blocks


def resumable_from(messages: list[dict[str, Any]], new_from: int) -> bool:
    """Whether a session that has seen messages[:new_from] can go on with the rest: it has
    seen something, and the rest holds the turn to answer."""
    turns = [i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")]
    return bool(turns) and 1 <= new_from <= turns[-1]


@dataclass(frozen=True, slots=True)
class Session:
    """How a `sessions: true` run keeps its conversation: saved in `config_dir` (the CLI's
    CLAUDE_CONFIG_DIR), and, with `resume`, continuing that saved session (a copy made for
    this run) from message `new_from` on."""

    config_dir: str
    resume: str | None = None
    new_from: int = 0

    def __post_init__(self) -> None:
        if self.resume is not None and (not valid_session_id(self.resume) or self.new_from < 1):
            raise ValueError("a resumed session needs a UUID session id and new_from >= 1")


def build(req: dict[str, Any], model: str, *, command: str, base_env: dict[str, str], home: str,
          extra_args: list[str], api_key: str | None, base_url: str | None, first_byte: float,
          max_prompt_bytes: int = MAX_PROMPT_BYTES, session: Session | None = None) -> Invocation:
    """Raises a 400 RelayError for what the CLI cannot take, before anything is started."""
    check(req)
    resume = session.resume if session else None
    system, blocks = user_message(req["messages"], session.new_from if session and resume else 0)
    system_bytes = system.encode()
    line = jsonfast.dumps({"type": "user", "message": {"role": "user", "content": blocks}}) + b"\n"
    size = len(system_bytes) + len(line)
    if size > max_prompt_bytes:
        raise bad_request(f"The prompt is {size} bytes; {CHANNEL} take at most {max_prompt_bytes} bytes "
                          "(system prompt and messages together, UTF-8).", param="messages", code="prompt_too_large")
    argv = [command, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
            "--input-format", "stream-json", "--model", model, "--tools", "", "--system-prompt-file", SYSTEM_PROMPT_FILE]
    if session is None:
        argv.append("--no-session-persistence")
    elif resume:
        argv += ["--resume", resume]
    if api_key:
        argv.append("--bare")  # API-key only: skips hooks, plugins, CLAUDE.md discovery and OAuth
    effort = req.get("reasoning_effort")
    if effort in EFFORT:
        argv += ["--effort", EFFORT[effort]]
    argv += extra_args
    env = {
        **base_env,
        "HOME": home,
        "TMPDIR": home,
        "CLAUDE_CODE_MAX_RETRIES": "0",  # retries and failover belong to the gateway
        "API_TIMEOUT_MS": str(int(first_byte * 1000)),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    max_out = max_output_tokens(req)
    if max_out:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(max_out)
    if api_key:
        env["ANTHROPIC_API_KEY"] = api_key
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    if session:
        env["CLAUDE_CONFIG_DIR"] = session.config_dir
    return Invocation(argv, env, line, {SYSTEM_PROMPT_FILE: system_bytes}, [k for k in IGNORED if req.get(k) is not None])
