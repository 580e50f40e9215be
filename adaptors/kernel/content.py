"""Reading a chat message's `content`, which is a string or a list of typed parts."""
from __future__ import annotations


def content_text(value: object, sep: str = "\n") -> str:
    """The text of a content value: a string as it is; of a list of parts, the `text` parts
    joined by `sep` (images, files, audio have none); of anything else (None), ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return sep.join(p["text"] for p in value if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""
