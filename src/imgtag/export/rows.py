"""What an exporter is: a function from a stream of ResultRow (see store/rows.py) to files.

Exporters never talk to the store: the caller turns store rows into ``ResultRow`` objects and
hands them over as an iterable, so each exporter can be tested with plain Python values and
memory stays flat (rows are streamed, never collected into a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imgtag.store.rows import STATUSES, USAGE_KEYS, ResultRow

__all__ = ["STATUSES", "USAGE_KEYS", "ExportContext", "Exporter", "ResultRow"]

@dataclass(frozen=True)
class ExportContext:
    """What an exporter needs besides the rows."""

    out_dir: Path
    field_names: list[str]  # the preset's top-level fields in order (CSV columns)
    # Fields that are arrays (joined with "|" in CSV, dc:subject bags in XMP, ...).
    list_fields: set[str] = field(default_factory=set)


# An exporter writes its files from a stream of rows and returns the paths it wrote.
Exporter = Callable[[Iterable[ResultRow], ExportContext], list[Path]]
