"""Whether results.csv/.jsonl already show what the store holds, so a rerun that changed nothing leaves them as they
are instead of rebuilding them from every row (issue 20 item 1).

A file is current when all of these hold since imgtag last wrote it:
- nothing results show changed in the store: `result_changes.version` (moved by triggers on files, jobs,
  review_state and attempts, `_v16_rerun_state`) is the same;
- it covers the same files: the file set (fileset.py) has as many files as then, and every file of the set then is
  in the set now (none has `seen_run` between that set's run and this one's; a file deleted from disk is not seen
  by the latest run, so it is caught here);
- the same target and options (a signature of them);
- the file on disk is the one imgtag wrote (size, mtime and inode): one a user edited or replaced is rewritten.
Every write of these formats is recorded (meta `exported`, by path), so `imgtag export --all` or
`--reviewed-only` writing other rows is never mistaken for the run's own.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgtag.store import Store

KEY = "exported"
SKIPPABLE = frozenset({"csv", "jsonl"})  # whole files in --out; the others are rewritten as before


@dataclass(frozen=True)
class ExportState:
    signature: str          # the format, target and options
    version: int            # result_changes.version when the rows were read
    set_run: int | None     # the file set's run (None: every file the folder has seen)
    set_count: int          # how many files that set held


def state_of(store: Store, name: str, meta: dict[str, Any], options: dict[str, Any], *, reviewed_only: bool,
             since_run: int | None) -> ExportState:
    """Read before the rows are streamed: a change made while they are written moves the version past this."""
    same = {k: v for k, v in meta.items() if k != "updated_at"}  # moves with every run, shown in no row
    text = json.dumps([name, same, options, reviewed_only], sort_keys=True, default=str, ensure_ascii=False)
    (version,) = store.db.execute("SELECT version FROM result_changes WHERE id = 1").fetchone()
    if since_run is None:
        (count,) = store.db.execute("SELECT COUNT(*) FROM files").fetchone()
    else:
        (count,) = store.db.execute("SELECT COUNT(*) FROM files WHERE seen_run >= ?", (since_run,)).fetchone()
    return ExportState(hashlib.sha256(text.encode()).hexdigest(), int(version), since_run, int(count))


def _on_disk(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def is_current(store: Store, path: Path, state: ExportState) -> bool:
    record = (store.get_meta(KEY) or {}).get(str(path))
    if not record or [record["signature"], record["version"], record["set_count"]] != [
            state.signature, state.version, state.set_count]:
        return False
    if record["set_run"] != state.set_run:
        if record["set_run"] is None or state.set_run is None:
            return False
        left = store.db.execute("SELECT 1 FROM files WHERE seen_run >= ? AND seen_run < ? LIMIT 1",
                                (record["set_run"], state.set_run)).fetchone()
        if left is not None:  # a file of the earlier set that this run's inputs no longer hold
            return False
    return record["disk"] is not None and record["disk"] == _on_disk(path)


def remember(store: Store, path: Path, state: ExportState) -> None:
    records = dict(store.get_meta(KEY) or {})
    records[str(path)] = {"signature": state.signature, "version": state.version, "set_run": state.set_run,
                          "set_count": state.set_count, "disk": _on_disk(path)}
    store.set_meta(KEY, records)
