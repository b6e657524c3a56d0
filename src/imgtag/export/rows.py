"""The row type every exporter consumes.

Exporters never talk to the store: the caller turns store rows into ``ResultRow`` objects and
hands them over as an iterable, so each exporter can be tested with plain Python values and
memory stays flat (rows are streamed, never collected into a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True)
class ExportContext:
    """What an exporter needs besides the rows."""

    out_dir: Path
    field_names: list[str]  # the preset's top-level fields in order (CSV columns)
    # Fields that are arrays (joined with "|" in CSV, dc:subject bags in XMP, ...).
    list_fields: set[str] = field(default_factory=set)


# An exporter writes its files from a stream of rows and returns the paths it wrote.
Exporter = Callable[[Iterable[ResultRow], ExportContext], list[Path]]
