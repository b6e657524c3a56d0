"""What an exporter is: a function from a stream of ResultRow (see store/rows.py) to files.

Exporters never talk to the store: the caller turns store rows into ``ResultRow`` objects and
hands them over as an iterable, so each exporter can be tested with plain Python values and
memory stays flat (rows are streamed, never collected into a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtag.store.rows import STATUSES, USAGE_KEYS, ResultRow

__all__ = ["STATUSES", "USAGE_KEYS", "ExportContext", "Exporter", "ResultRow"]

@dataclass(frozen=True)
class ExportContext:
    """What an exporter needs besides the rows."""

    out_dir: Path
    field_names: list[str]  # the preset's top-level fields in order (CSV columns)
    # Fields that are arrays (joined with "|" in CSV, dc:subject bags in XMP, ...).
    list_fields: set[str] = field(default_factory=set)
    preset: str | None = None  # preset name (which field mapping applies, e.g. for XMP)
    lang: str | None = None  # the run's --lang: language tag of translated text (XMP xml:lang)
    xmp_name: str = "full"  # XMP sidecar naming: "full" (photo.jpg.xmp) or "stem" (photo.xmp)
    xmp_touch: bool = False  # xmp-embed: leave the new modification time instead of restoring the old one
    # store.xmp.XmpLedger: what per-image XMP writes remember between exports (None: remember nothing).
    xmp_ledger: Any = None
    # One-line messages for the user (sidecar name collisions, per-image failures); the CLI prints them.
    notes: list[str] = field(default_factory=list)


# An exporter writes its files from a stream of rows and returns the paths it wrote.
Exporter = Callable[[Iterable[ResultRow], ExportContext], list[Path]]
