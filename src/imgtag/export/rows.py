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

from imgtag.export.ledger import DictLedger, Ledger
from imgtag.store.rows import STATUSES, USAGE_KEYS, ResultRow

__all__ = ["STATUSES", "USAGE_KEYS", "ExportContext", "Exporter", "ResultRow"]


@dataclass(frozen=True)
class ExportContext:
    """What an exporter needs besides the rows."""

    out_dir: Path
    field_names: list[str]  # the preset's top-level fields in order (CSV columns)
    # Fields that are arrays (joined with "|" in CSV, dc:subject bags in XMP, ...).
    list_fields: set[str] = field(default_factory=set)
    # The preset's full JSON Schema: typed columns (parquet, metadata.jsonl). None = infer from the above.
    schema: dict[str, Any] | None = None
    # txt captions: template such as "{short_caption}" (None = the preset's txt_template, else its first
    # field), and what to do with a .txt that imgtag did not write: skip | overwrite | append | prepend.
    txt_template: str | None = None
    txt_existing: str = "skip"
    # metadata.jsonl: replace one that imgtag did not write (otherwise refused with a sentence).
    metadata_overwrite: bool = False
    # Files imgtag wrote outside out_dir (see export/ledger.py); the writer passes the store's.
    ledger: Ledger = field(default_factory=DictLedger)
    # One line per per-image format for the run summary ("txt: 120 written, 3 skipped ...").
    notes: list[str] = field(default_factory=list)
    # Sentences for what was refused (exit 2), e.g. a user's own metadata.jsonl in the way.
    refusals: list[str] = field(default_factory=list)
    # Files a per-image format meant to write and could not (a broken existing XMP, exiftool refused), as
    # display paths: the run or export exits 1 and names them (the reasons are in the notes).
    unwritten: list[str] = field(default_factory=list)
    preset: str | None = None  # preset name (which field mapping applies, e.g. for XMP)
    lang: str | None = None  # the run's --lang: language tag of translated text (XMP xml:lang)
    provider: str | None = None  # the target's provider and model, which files for people name (contact sheet)
    model: str | None = None
    target_date: str | None = None  # ISO time the target was last run (stable, so re-exports stay identical)
    xmp_name: str = "full"  # XMP sidecar naming: "full" (photo.jpg.xmp) or "stem" (photo.xmp)
    xmp_touch: bool = False  # xmp-embed: leave the new modification time instead of restoring the old one
    # XMP: replace a title/description (language alternative) that imgtag did not write; kept otherwise.
    xmp_overwrite_text: bool = False
    # xlsx: the preset's field titles by language ({"zh": {"tags": "标签"}}): headers in ``lang`` when it has
    # them (export/titles.py); and a small thumbnail per row.
    field_titles: dict[str, dict[str, str]] = field(default_factory=dict)
    xlsx_thumbnails: bool = False
    # store.xmp.XmpLedger: what per-image XMP writes remember between exports (None: remember nothing).
    xmp_ledger: Any = None


# An exporter writes its files from a stream of rows and returns the paths it wrote.
Exporter = Callable[[Iterable[ResultRow], ExportContext], list[Path]]
