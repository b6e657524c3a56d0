"""Rebuild a target's output files from the store (end of a run, `imgtag export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgtag.export import EXPORTERS, parse_formats
from imgtag.export.rows import ExportContext
from imgtag.store import Store, WorkKey


def write_exports(store: Store, meta: dict[str, Any], formats: str | None = None) -> list[Path]:
    """The latest target's files go to the folder itself (results.csv, ...). Once the folder holds several
    targets, each target's files are also (for other targets: only) written to targets/<preset>--<model>/."""
    from imgtag import targets

    latest = store.get_meta("target")
    is_latest = latest is None or targets.key_of(latest) == targets.key_of(meta)
    written: list[Path] = []
    if is_latest:
        written += _write(store, meta, formats, store.out_dir)
    if not is_latest or len(targets.all_targets(store)) > 1:
        written += _write(store, meta, formats, targets.target_dir(store, meta))
    return written


def _write(store: Store, meta: dict[str, Any], formats: str | None, out_dir: Path) -> list[Path]:
    key = WorkKey(meta["preset_version"], meta["provider"], meta["model"])
    ctx = ExportContext(out_dir=out_dir, field_names=list(meta["fields"]),
                        list_fields=set(meta.get("list_fields") or []))
    written: list[Path] = []
    for name in parse_formats(formats or meta.get("formats") or "csv,jsonl"):
        written.extend(EXPORTERS[name](store.result_rows(key, meta["preset_name"], ctx.field_names), ctx))
    return written
