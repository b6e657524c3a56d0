"""Words for counts: "1 file", "2 files", "1 batch", "2 batches"."""

from __future__ import annotations

_IRREGULAR = {"batch": "batches", "this": "these", "entry": "entries", "was": "were", "is": "are"}


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun if count == 1 else _IRREGULAR.get(noun, noun + 's')}"
