"""json-sidecar: one JSON file per image beside it, for CMS and web pipelines that pick files up by name.

Named ``photo.jpg.imgtag.json``: the full image name keeps ``a.jpg`` and ``a.png`` apart, and the
``.imgtag`` part keeps clear of ``photo.jpg.json``, which other tools already write (Google Takeout puts
its own metadata there). A file of that name that imgtag did not write is still never replaced (see
export/beside.py). Written for ok and failed images (the status says which); the object is the
results.jsonl record plus ``file`` (the image's own name) and ``generator``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from imgtag.export.beside import Tally, place
from imgtag.export.jsonline import one_line
from imgtag.export.results import _finite, jsonl_record
from imgtag.export.rows import ExportContext, ResultRow

FORMAT = "json-sidecar"
SUFFIX = ".imgtag.json"


def sidecar_path(source: str) -> str:
    return source + SUFFIX


def sidecar_bytes(row: ResultRow) -> bytes:
    record = {"generator": "imgtag", "file": os.path.basename(row.source_path or row.path),
              **jsonl_record(row)}
    text = json.dumps(_finite(record), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    # Lone surrogates (non-UTF-8 names, or "\ud800" in model text) cannot be UTF-8, and U+2028/9 break lines for
    # JavaScript and line-based tools: both stay escapes.
    text = one_line(text)
    return text.encode("utf-8")


def write_json_sidecars(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    tally = Tally(FORMAT)
    for row in rows:
        if row.status not in ("ok", "failed") or not row.source_path:
            continue
        outcome, reason = place(sidecar_path(row.source_path), sidecar_bytes(row), FORMAT, ctx.ledger)
        tally.add(outcome, reason)
    ctx.notes.append(tally.line(f"photo.jpg{SUFFIX} beside each image",
                                hint="files of that name that imgtag did not write were left as they are"))
    return []
