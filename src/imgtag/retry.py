"""`imgtag retry`: the last run's target, applied to recorded failures only."""

from __future__ import annotations

import os
from pathlib import Path

from imgtag.config import RunConfig
from imgtag.ingest.discover import Discovered
from imgtag.store import Store


def retry_config(out: Path, *, progress: bool = True) -> RunConfig | None:
    """A RunConfig whose file source is exactly the failed files (unreadable images and failed requests)."""
    with Store(out, create=False) as store:
        meta = store.get_meta("target")
        if not meta:
            return None
        rows = store.db.execute(
            "SELECT DISTINCT f.path, f.display, f.root, f.size, f.mtime_ns FROM files f"
            " LEFT JOIN jobs j ON j.sha256 = f.sha256 AND j.preset_version = ? AND j.provider = ? AND j.model = ?"
            " WHERE f.status = 'failed' OR (f.status = 'ok' AND j.status = 'failed') ORDER BY f.id",
            (meta["preset_version"], meta["provider"], meta["model"]),
        ).fetchall()
    if not rows:
        return None
    source = [Discovered(path=os.fsdecode(r["path"]), display=r["display"], root=r["root"], size=r["size"],
                         mtime_ns=r["mtime_ns"]) for r in rows]
    return RunConfig(inputs=[], out=out, preset=meta["preset"], lang=meta.get("lang"),
                     categories=meta.get("categories"), provider=meta["provider"], model=meta["model"],
                     mode=meta.get("mode") or "sync", formats=meta.get("formats") or "csv,jsonl",
                     retry_failed=True, progress=progress, source=source, detail=meta.get("detail"),
                     max_edge=meta.get("max_edge"),
                     provider_settings={"base_url": meta["base_url"]} if meta.get("base_url") else {},
                     export_options=dict(meta.get("export_options") or {}))
