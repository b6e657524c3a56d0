"""Which files results.*, `status` and the end-of-run summary cover, and the one base every `path` is measured
from (issue 17 item 1; README "Which files the results cover").

- The *file set* is the files of the latest `run`'s inputs: meta `file_set` holds that run's id and the up-front
  count of its inputs, and each file row the latest real run that saw it (`files.seen_run`). So a run stopped
  before discovery ended still reports every input file (those not reached yet are pending), and an earlier run's
  other files drop out of results.* and `status` (they stay in the store: `imgtag export --all` writes them). A
  retry works inside the set; a dry run never changes it, and `scan` never writes into a run's store.
- Every `path` is relative to one base per output folder, recorded by the first run into it (meta `path_base`):
  the deepest folder holding all of that run's inputs (base_for). Later runs keep it, so a file keeps its path
  from run to run; a file outside the base is `../`-relative to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from imgtag.ingest.discover import relative_display
from imgtag.store import Store

SET_KEY = "file_set"
BASE_KEY = "path_base"


@dataclass(frozen=True)
class FileSet:
    run: int                 # the run whose inputs these are; files with seen_run >= run belong to it
    counted: int | None      # the up-front count of its inputs (None: not known, e.g. paths from stdin)


def current(store: Store) -> FileSet | None:
    """The folder's file set (None: a store from before sets, or one only dry runs used: every file)."""
    value = store.get_meta(SET_KEY)
    return FileSet(int(value["run"]), value.get("counted")) if value else None


def begin(store: Store, run_id: int) -> None:
    """A real `run` starts: from now on results and status cover its inputs."""
    store.set_meta(SET_KEY, {"run": run_id, "counted": None})


def record_count(store: Store, run_id: int, counted: int) -> None:
    """The up-front walk finished: the set's size is known, whatever the run reaches before it stops."""
    fs = current(store)
    if fs is not None and fs.run == run_id and fs.counted != counted:
        store.set_meta(SET_KEY, {"run": run_id, "counted": counted})


def base_for(inputs: Sequence[str]) -> str:
    """The base a first run records: the deepest folder holding every input (a folder argument itself, a file's
    folder, a glob's literal folder), so `run shop` gives `photos/a.jpg` and `run /data/shopA /data/shopB` gives
    `shopA/a.jpg`; the current folder when a list or stdin may name anything."""
    folders = []
    for arg in inputs:
        if arg == "-" or (arg.startswith("@") and len(arg) > 1 and not os.path.lexists(arg)):
            return os.getcwd()
        path = os.path.abspath(arg)
        if os.path.isdir(path):
            folders.append(path)
        elif os.path.lexists(path):
            folders.append(os.path.dirname(path))
        else:  # a glob: the folder part before its first wildcard
            literal = re.split(r"[*?[]", arg, maxsplit=1)[0]
            folders.append(os.path.abspath(literal if literal.endswith(("/", os.sep)) else
                                           os.path.dirname(literal) or os.curdir))
    try:
        return os.path.commonpath(folders) if folders else os.getcwd()
    except ValueError:  # different drives: no common folder
        return os.getcwd()


def path_base(store: Store, inputs: Sequence[str]) -> str:
    """The folder's base, recorded now if this is the first run to need one. Rows written before (a store from
    before bases, or a scan's) are measured from it at once, so no output ever holds two bases."""
    base = store.get_meta(BASE_KEY)
    if base is None:
        base = base_for(inputs)
        rows = store.db.execute("SELECT id, path FROM files").fetchall()
        with store.db:
            store.db.execute("BEGIN IMMEDIATE")
            store.db.executemany("UPDATE files SET display=? WHERE id=?",
                                 [(relative_display(os.fsdecode(r["path"]), base), r["id"]) for r in rows])
        store.set_meta(BASE_KEY, base)
    return str(base)


def stated_base(store: Store) -> str | None:
    """The base, for the summary and `status` to state (None before any run recorded one)."""
    base = store.get_meta(BASE_KEY)
    return str(base) if base is not None else None
