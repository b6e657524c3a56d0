"""Words for counts: "1 file", "2 files", "1 batch", "2 batches"."""

from __future__ import annotations

_IRREGULAR = {"batch": "batches", "this": "these", "entry": "entries", "was": "were", "is": "are"}


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun if count == 1 else _IRREGULAR.get(noun, noun + 's')}"


def failure_text(kind: str, message: str) -> str:
    """A stored cause as one phrase: its kind only when the message does not already say it. "too small: 256x171
    px", not "too_small: too small: 256x171 px"; "decompression bomb: ...", not "bomb: decompression bomb: ...";
    "corrupt: cannot identify image file" (the message alone would not say what kind of failure it is)."""
    message = message or ""
    if not message:
        return kind
    said = message.split(":", 1)[0].lower()
    if kind.replace("_", " ").lower() in said:
        return message
    return f"{kind}: {message}"
