"""Thumbnails under --out/thumbs/, shared by the contact sheet and the workbook.

Named by content hash and size (copies share one, a re-export reuses them), made by the same decoder as the
requests (orientation, CMYK, 16-bit, HEIC...) in its process pool; originals are only read. A smaller size
is made from a larger thumbnail already there when it can be (a few kilobytes to decode instead of the
original's megapixels), so the workbook reuses the contact sheet's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path

from imgtag.export.atomic import atomic_write_bytes
from imgtag.export.rows import ResultRow

THUMBS = "thumbs"
QUALITY = 80
SHEET_EDGE = 360  # the contact sheet's thumbnails (export/contact_sheet.py)
_HEX = re.compile(r"^[0-9a-f]{64}$")
# The decoder's reason codes for a file it could not use (see ingest/preprocess.py ImageReport.reason_code).
_UNDECODABLE = frozenset({"empty", "not_image", "unsupported", "truncated", "corrupt", "bomb", "too_small",
                          "unreadable"})
# Below this many new thumbnails, decoding in-process beats starting a process pool.
_POOL_FROM = 16


def thumb_name(sha256: str, edge: int) -> str:
    """The thumbnail's path under --out, e.g. thumbs/ab/ab12...-360.jpg."""
    return f"{THUMBS}/{sha256[:2]}/{sha256}-{edge}.jpg"


def is_sha256(text: str) -> bool:
    return bool(_HEX.match(text))


def can_have_thumb(row: ResultRow) -> bool:
    """A row whose image the decoder can read: a hashed original it did not refuse (corrupt, truncated, bombs
    ...: those get a placeholder, not a second try)."""
    return (bool(row.sha256 and _HEX.match(row.sha256) and row.source_path)
            and row.status in ("ok", "failed", "pending") and (row.error or {}).get("type") not in _UNDECODABLE)


def make_thumbs(wanted: Iterable[tuple[str, str]], out: Path, edge: int, count: int | None = None) -> tuple[int, int]:
    """Make each (source image, thumbnail name) at ``edge`` px on the long side; (made, failed). `wanted` is
    streamed (a list, or a SpillSet's items: `count` then says how many, which decides whether a pool pays off);
    only the requests in flight are held."""
    count = len(wanted) if count is None and isinstance(wanted, Sized) else count
    if not count:
        return 0, 0
    from imgtag.ingest.preprocess import PrepareRequest, prepare_many

    in_flight: dict[str, list[str]] = {}  # source -> its thumbnails, for the requests not answered yet

    def requests() -> Iterator[PrepareRequest]:
        for src, thumb in wanted:
            if src in in_flight:
                in_flight[src].append(thumb)
                continue
            in_flight[src] = [thumb]
            yield PrepareRequest(path=src, max_long_edge=edge, min_short_side=0, want_hashes=False,
                                 jpeg_quality=QUALITY)

    made = failed = 0
    for report in prepare_many(requests(), workers=1 if count < _POOL_FROM else None):
        for thumb in in_flight.pop(report.path, []):
            if report.ok and report.encoded:
                target = out / thumb
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, report.encoded)
                made += 1
            else:
                failed += 1
    return made, failed


def best_source(row: ResultRow, out: Path, edge: int, larger: tuple[int, ...]) -> str:
    """What to make ``row``'s ``edge`` thumbnail from: a larger thumbnail of it already made, else the original."""
    for size in larger:
        if size > edge and (out / thumb_name(row.sha256 or "", size)).exists():
            return str(out / thumb_name(row.sha256 or "", size))
    return row.source_path or ""
