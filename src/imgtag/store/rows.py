"""The row the store hands to every exporter: one image's outcome under one target.

The store builds these from its tables; exporters only ever see this shape (and never the store),
so each exporter can be tested with plain Python values and rows stream with flat memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Keys of ResultRow.usage, in the order CSV columns and docs list them.
USAGE_KEYS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)

STATUSES: frozenset[str] = frozenset({"ok", "failed", "skipped", "pending"})


@dataclass(frozen=True)
class ResultRow:
    """One image's outcome, as exporters see it (see SPEC "results.jsonl (contract)")."""

    path: str  # display path (relative to the scanned root where possible)
    sha256: str | None
    # "ok" | "failed" | "skipped" | "pending" (pending = not answered yet, e.g. run stopped by budget)
    status: str
    fields: dict[str, Any] | None  # the preset's validated object (None unless ok)
    # None or {"type": str, "message": str}; for skipped rows type is the reason code ("too_small")
    error: dict[str, Any] | None
    model: str | None
    preset: str | None  # preset name
    preset_version: str | None
    provider: str | None
    usage: dict[str, Any] | None  # keys: USAGE_KEYS
    cost_usd: float | None
    duplicate_of: str | None = None  # display path of the first file with identical content
    mode: str | None = None  # "sync" | "batch"
    # Absolute filesystem path of the original (symlinks not resolved; may hold surrogate escapes for
    # non-UTF-8 names, so os.fsencode gives the exact bytes). Per-image formats (sidecars, captions)
    # write beside it; the display path above is for people and is relative.
    source_path: str | None = None
    # Absolute path of the folder argument the file was found under (None when given as a file):
    # where a per-folder file such as metadata.jsonl belongs.
    root: str | None = None
    # `imgtag review`: approved by a person, and the fields whose current value a person wrote (``fields``
    # already holds current values: see current_fields).
    reviewed: bool = False
    edited_fields: tuple[str, ...] = ()


def current_fields(model: dict[str, Any] | None, edits: dict[str, Any] | None) -> dict[str, Any] | None:
    """A field's current value: the latest human one (`imgtag review`), else the model's. None: no answer.

    The one place this rule lives: the store's result rows (so every export) and the review page use it."""
    if model is None:
        return None
    if not edits:
        return model
    return {**model, **edits}


def edited_names(edits: dict[str, Any] | None, order: Sequence[str] | None = None) -> list[str]:
    """Names of the fields a person changed, in the preset's order (names it lacks last)."""
    if not edits:
        return []
    known = [name for name in (order or ()) if name in edits]
    return known + [name for name in edits if name not in known]
