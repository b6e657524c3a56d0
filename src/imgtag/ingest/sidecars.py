"""Which files beside the images are sidecars (metadata about an image, never an image), so discovery drops them.

Without this, a rerun on a folder imgtag exported into would list its own XMP sidecars, JSON sidecars,
captions and metadata.jsonl as skipped "not an image" rows. Two rules, cheapest first:

* by name: ``*.xmp`` (``photo.jpg.xmp`` and ``photo.xmp``, ours or another tool's), ``*.imgtag.json``,
  ``metadata.jsonl`` (the Hugging Face imagefolder file), and a ``.txt`` whose stem is the stem of an image in
  the same folder (``photo.txt`` beside ``photo.jpg``: the training-caption convention);
* by the export ledger: a ``.txt``/``.json``/``.jsonl`` file imgtag recorded writing (``export_files``), e.g.
  the caption of an image whose name has no image extension.

A user's own ``notes.txt`` or ``report.pdf`` matches neither and is still reported as not an image. Names are
the only thing looked at for the first rule: discovery must not open files.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

# Extensions of files that are images in their own right, by name alone: what imgtag decodes, plus editor files
# and camera raws, whose captions and sidecars follow the same naming conventions. Case-folded, with the dot.
# Also the XMP sidecar writer's notion of an image sharing a stem (export/xmp_sidecar.py).
_IMAGE_EXTENSIONS = """
    jpg jpeg jpe jfif png apng gif webp bmp dib tif tiff heic heif hif avif jp2 j2k jpf jpx jxl ico psd psb qoi
    svg dng cr2 cr3 crw nef nrw arw srf sr2 orf rw2 raf pef srw raw rwl 3fr erf kdc mrw x3f iiq mos
"""
IMAGE_EXTENSIONS = frozenset(f".{ext}" for ext in _IMAGE_EXTENSIONS.split())
# What the export ledger can know that the name rule does not: only formats imgtag writes beside images.
_LEDGER_EXTENSIONS = (".txt", ".json", ".jsonl")


def image_stems(names: Iterable[str]) -> frozenset[str]:
    """Stems of the names in one folder that look like images by extension (``a.jpg`` -> ``a``)."""
    stems = set()
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.casefold() in IMAGE_EXTENSIONS:
            stems.add(stem)
    return frozenset(stems)


class SidecarRule:
    """``ignores(path, name, stems)``: whether a discovered file is a sidecar. ``stems`` is called (at most once
    per folder, by the caller's caching) only when a .txt needs its siblings."""

    def __init__(self, ours: Callable[[str], bool] | None = None) -> None:
        self.ours = ours

    def ignores(self, path: str, name: str, stems: Callable[[], frozenset[str]]) -> bool:
        low = name.casefold()
        if low.endswith((".xmp", ".imgtag.json")) or low == "metadata.jsonl":
            return True
        if low.endswith(".txt") and name[:-4] in stems():
            return True
        return self.ours is not None and low.endswith(_LEDGER_EXTENSIONS) and self.ours(path)


class LedgerPaths:
    """Membership in the store's ``export_files`` table, from any thread (discovery and the up-front count run in
    their own). One read-only connection behind a lock: a handful of lookups per folder, never per image."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def __call__(self, path: str) -> bool:
        with self._lock:
            if self._closed:
                return False
            try:
                if self._db is None:
                    self._db = sqlite3.connect(f"{self._db_path.as_uri()}?mode=ro", uri=True,
                                               check_same_thread=False, timeout=30)
                row = self._db.execute("SELECT 1 FROM export_files WHERE path=?", (os.fsencode(path),)).fetchone()
            except (sqlite3.Error, ValueError):
                return False  # a store we cannot read: the name rule still applies, the file is reported
            return row is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None


def forget_sidecar_rows(db: sqlite3.Connection, rule: SidecarRule) -> int:
    """Delete the "not an image" rows an older imgtag recorded for sidecars, so results list images (and the
    user's own other files) only. Returns how many went. Such rows have no job: nothing paid for is lost."""
    # status IN (...), not <> 'ok': the files_set index (status, reason_code) finds them without reading every file.
    rows = db.execute("SELECT id, path FROM files WHERE status IN ('failed', 'skipped') AND reason_code = 'not_image'"
                      ).fetchall()
    cache: dict[str, frozenset[str]] = {}

    def stems_of(parent: str) -> frozenset[str]:
        if parent not in cache:
            try:
                cache[parent] = image_stems(os.listdir(parent))
            except OSError:
                cache[parent] = frozenset()
        return cache[parent]

    doomed = []
    for file_id, raw in rows:
        path = os.fsdecode(raw)
        parent, name = os.path.split(path)
        if rule.ignores(path, name, lambda parent=parent: stems_of(parent)):
            doomed.append((file_id,))
    if doomed:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM files WHERE id = ?", doomed)
            db.execute("COMMIT")
        except sqlite3.Error:  # referenced after all: leave them, they are only noise in the results
            if db.in_transaction:
                db.execute("ROLLBACK")
            return 0
    return len(doomed)
