"""Rebuild a target's output files from the store (end of a run, `imgtag export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgtag.export import EXPORTERS, parse_formats
from imgtag.export.rows import ExportContext
from imgtag.store import Store, WorkKey


def write_exports(store: Store, meta: dict[str, Any], formats: str | None = None) -> list[Path]:
    key = WorkKey(meta["preset_version"], meta["provider"], meta["model"])
    ctx = ExportContext(out_dir=store.out_dir, field_names=list(meta["fields"]),
                        list_fields=set(meta.get("list_fields") or []))
    written: list[Path] = []
    for name in parse_formats(formats or meta.get("formats") or "csv,jsonl"):
        written.extend(EXPORTERS[name](store.result_rows(key, meta["preset_name"], ctx.field_names), ctx))
    return written
