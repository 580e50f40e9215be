"""`POST /v1/responses/compact`, the pure part: the summary request built from a
conversation, and the compacted item list built from the summary.

OpenAI answers with the user's own messages followed by a `compaction` item whose
`encrypted_content` only OpenAI can read. Relay cannot mint those blobs, so its `compaction`
item carries the summary itself: `encrypted_content` is `relay-compaction-v1:` followed by the
summary's UTF-8 in base64. It is not secret (the summary is of the client's own conversation)
and needs no store, so it works across instances and tenants cannot reach each other's. When the
item comes back in `input`, the bridge (request.py) reads it into a user message holding the
summary; a compaction item Relay did not make (an OpenAI blob) is a 400 naming it, since
dropping it would silently lose the conversation.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ..kernel.content import content_text
from ..kernel.ids import new_id
from ..kernel.tokens import estimate_text

ENCRYPTED_PREFIX = "relay-compaction-v1:"
# The user messages kept verbatim beside the summary, newest first, up to this many estimated
# tokens: OpenAI's default for /responses/compact, as Codex mirrors it (and reads them as the
# real user turns).
KEPT_USER_TOKENS = 64_000

SUMMARY_INTRO = "This conversation was compacted. Summary of everything before this point:\n\n"

COMPACT_INSTRUCTIONS = """\
You compact conversations. You get the transcript of a conversation between a user and an AI \
assistant, with the assistant's tool calls and their results. The transcript will be replaced \
by your summary, and the assistant will continue the work from the summary alone (its \
instructions and the user's recent messages will be given again, so do not repeat them).

Write the summary as notes for that assistant:
- the user's goal, requirements and preferences;
- what was done and found: decisions and their reasons, files, commands, tool results, errors;
- the current state of the work and what is still open;
- the next steps.
Keep names, paths, identifiers, numbers, code and error messages exact. Answer with the summary \
only."""


def encode_summary(summary: str) -> str:
    """The `encrypted_content` of Relay's compaction item."""
    return ENCRYPTED_PREFIX + base64.b64encode(summary.encode("utf-8")).decode("ascii")


def decode_summary(encrypted: str) -> str | None:
    """The summary inside a compaction item Relay made, or None for any other content."""
    if not encrypted.startswith(ENCRYPTED_PREFIX):
        return None
    try:
        return base64.b64decode(encrypted[len(ENCRYPTED_PREFIX):], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def summary_message(summary: str) -> dict[str, Any]:
    """The chat message a compaction item becomes: a user turn, which every upstream takes
    anywhere in a conversation (consecutive user turns merge where they must)."""
    return {"role": "user", "content": SUMMARY_INTRO + summary}


# --- the summary request ----------------------------------------------------------------

def _parts_text(content: Any) -> str:
    """Chat content as transcript text; what has no text is named, not dropped unseen."""
    if not isinstance(content, list):
        return content_text(content)
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append(str(part.get("text", "")))
        elif kind == "image_url":
            out.append("[image]")
        elif kind == "file":
            name = (part.get("file") or {}).get("filename")
            out.append(f"[file {name}]" if name else "[file]")
        else:
            out.append(f"[{kind}]")
    return "\n".join(out)


def transcript(messages: list[dict[str, Any]]) -> str:
    """A chat conversation as plain text. The summary call sends the history as text rather
    than as turns, so it is valid on every upstream whatever the history holds (tool calls
    without their tool definitions, orphaned or replayed reasoning, any order of roles)."""
    blocks: list[str] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            blocks.append(f"[tool result {m.get('tool_call_id', '')}]\n{_parts_text(m.get('content'))}")
            continue
        text = _parts_text(m.get("content"))
        if text or role != "assistant":
            blocks.append(f"[{role}]\n{text}")
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {}
            blocks.append(f"[assistant calls tool {fn.get('name', '')} ({tc.get('id', '')})]\n{fn.get('arguments', '')}")
    return "\n\n".join(blocks)


def summary_request(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request that asks the channel's model for the summary of `messages` (the
    conversation's chat form, instructions first)."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": COMPACT_INSTRUCTIONS},
            {"role": "user", "content": f"<transcript>\n{transcript(messages)}\n</transcript>\n\nWrite the summary now."},
        ],
    }


def summary_of(completion: dict[str, Any]) -> str:
    """The summary text of the completion ('' when the model wrote none)."""
    choice = (completion.get("choices") or [{}])[0]
    return content_text((choice.get("message") or {}).get("content")).strip()


# --- the compacted output ---------------------------------------------------------------

def _user_text(item: Any) -> str | None:
    """The text of a user message item ('message' type or a bare role), else None."""
    if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message":
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "input_text" and isinstance(p.get("text"), str))
    return None


def _cut(text: str, tokens: int) -> str:
    """`text` cut to about `tokens` estimated tokens, its start and end kept."""
    keep = tokens * 4
    head = keep - keep // 2
    return f"{text[:head]}…[{len(text) - keep} characters cut]…{text[len(text) - keep // 2:]}"


def kept_user_messages(raw_input: Any, budget: int = KEPT_USER_TOKENS) -> list[str]:
    """The texts of the input's user messages to keep, oldest first: the newest ones whose
    estimated tokens fit in `budget` together, the one that does not fit cut to what is left
    (images and files are left to the summary)."""
    items = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input or []
    texts = [t for t in map(_user_text, items) if t]
    kept: list[str] = []
    for text in reversed(texts):
        cost = estimate_text(text)
        if cost > budget:
            if budget > 0:
                kept.append(_cut(text, budget))
            break
        budget -= cost
        kept.append(text)
    return kept[::-1]


def compacted_output(raw_input: Any, summary: str) -> list[dict[str, Any]]:
    """The compacted item list (spec: ItemField items): the kept user messages, then the
    compaction item, last, as OpenAI orders them."""
    out: list[dict[str, Any]] = [
        {"type": "message", "id": new_id("msg_"), "status": "completed", "role": "user",
         "content": [{"type": "input_text", "text": text}]}
        for text in kept_user_messages(raw_input)
    ]
    out.append({"type": "compaction", "id": new_id("cmp_"), "encrypted_content": encode_summary(summary)})
    return out


def compacted_response(output: list[dict[str, Any]], usage: dict[str, Any], created_at: int) -> dict[str, Any]:
    """The spec's CompactResource; `usage` in the Responses shape (ResponseUsage)."""
    return {"id": new_id("resp_"), "object": "response.compaction", "output": output, "created_at": created_at,
            "usage": usage}


def readable_by_upstream(raw_input: Any) -> Any:
    """A Responses `input` for a native upstream: Relay's own compaction items (which only
    Relay can read) become the user message they stand for; everything else is unchanged,
    an upstream's own compaction items included."""
    if not isinstance(raw_input, list) or not any(isinstance(i, dict) and i.get("type") == "compaction" for i in raw_input):
        return raw_input
    out = []
    for item in raw_input:
        summary = decode_summary(item.get("encrypted_content") or "") if isinstance(item, dict) and item.get("type") == "compaction" else None
        out.append(item if summary is None else {"type": "message", **summary_message(summary)})
    return out
