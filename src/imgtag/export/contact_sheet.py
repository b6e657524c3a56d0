"""contact-sheet.html: every image as a thumbnail with all its fields, failures with their reasons, and a
filter by text, tag and status, in one self-contained page under --out (no server, nothing loaded from
outside, opens from the file system).

Safety: model text is data, never markup. The rows are embedded as JSON in a ``<script
type="application/json">`` block with ``<``, ``>``, ``&`` and U+2028/2029 escaped (so no text can close
the block or start a tag), and the page builds its DOM with ``textContent`` only. A Content-Security-
Policy allows exactly the page's own script (by hash) and local images, so even an injected element
could not run or fetch anything.

Thumbnails go to --out/thumbs/, named by content hash (copies share one, a re-export reuses them), made
by the same decoder as the requests (orientation, CMYK, 16-bit, HEIC...) in its process pool; originals
are only read. Cards are rendered in pages as the user scrolls, and images load lazily, so 10,000
images stay fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from imgtag.export.atomic import atomic_write, atomic_write_bytes
from imgtag.export.results import _SURROGATE, _finite
from imgtag.export.rows import ExportContext, ResultRow

SHEET_NAME = "contact-sheet.html"
THUMBS = "thumbs"
THUMB_EDGE = 360
THUMB_QUALITY = 80
_HEX = re.compile(r"^[0-9a-f]{64}$")
# The decoder's reason codes for a file it could not use (see ingest/preprocess.py ImageReport.reason_code).
_UNDECODABLE = frozenset({"empty", "not_image", "unsupported", "truncated", "corrupt", "bomb", "too_small",
                          "unreadable"})
# Below this many new thumbnails, decoding in-process beats starting a process pool.
_POOL_FROM = 16


def thumb_name(sha256: str) -> str:
    return f"{THUMBS}/{sha256[:2]}/{sha256}-{THUMB_EDGE}.jpg"


def safe_json(value: Any) -> str:
    """JSON that is inert inside an HTML <script> element: nothing in it can end the element, open a
    comment or tag, or break a JavaScript line."""
    text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def write_contact_sheet(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    script = _asset("contact_sheet.js")
    wanted: list[tuple[str, str]] = []  # (original, thumbnail path) still to make
    queued: set[str] = set()
    path = out / SHEET_NAME
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(_head(script, ctx))
        first = True
        for row in rows:
            thumb = None
            if row.sha256 and _HEX.match(row.sha256) and row.source_path and _decodable(row):
                thumb = thumb_name(row.sha256)
                if thumb not in queued and not (out / thumb).exists():
                    queued.add(thumb)
                    wanted.append((row.source_path, thumb))
            f.write(("" if first else ",\n") + safe_json(_record(row, thumb)))
            first = False
        f.write(_TAIL.replace("@SCRIPT@", script))
    made, failed = _make_thumbs(wanted, out)
    if wanted:
        ctx.notes.append(f"html: {made} new thumbnails in {out / THUMBS}"
                         + (f", {failed} could not be made (shown as a placeholder)" if failed else ""))
    return [path]


def _decodable(row: ResultRow) -> bool:
    # Files the decoder already refused (corrupt, truncated, bombs...) get a placeholder, not a second try.
    return row.status in ("ok", "failed", "pending") and (row.error or {}).get("type") not in _UNDECODABLE


def _record(row: ResultRow, thumb: str | None) -> dict[str, Any]:
    return {"path": row.path, "status": row.status, "thumb": thumb, "fields": row.fields, "error": row.error,
            "duplicate_of": row.duplicate_of}


def _make_thumbs(wanted: list[tuple[str, str]], out: Path) -> tuple[int, int]:
    if not wanted:
        return 0, 0
    from imgtag.ingest.preprocess import PrepareRequest, prepare_many

    by_source: dict[str, list[str]] = {}
    for src, thumb in wanted:
        by_source.setdefault(src, []).append(thumb)
    reqs = (PrepareRequest(path=src, max_long_edge=THUMB_EDGE, min_short_side=0, want_hashes=False,
                           jpeg_quality=THUMB_QUALITY) for src in by_source)
    made = failed = 0
    for report in prepare_many(reqs, workers=1 if len(wanted) < _POOL_FROM else None):
        for thumb in by_source[report.path]:
            if report.ok and report.encoded:
                target = out / thumb
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, report.encoded)
                made += 1
            else:
                failed += 1
    return made, failed


def _asset(name: str) -> str:
    return (resources.files("imgtag.export") / name).read_text(encoding="utf-8")


def _head(script: str, ctx: ExportContext) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self' data:; "
           "base-uri 'none'; form-action 'none'")
    fields = safe_json({"fields": ctx.field_names, "lists": sorted(ctx.list_fields)})
    return (_HEAD.replace("@CSP@", csp).replace("@CSS@", _asset("contact_sheet.css"))
            .replace("@FIELDS@", fields))


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>imgtag contact sheet</title>
<style>
@CSS@</style>
</head>
<body>
<header>
  <h1>imgtag <span>contact sheet</span></h1>
  <div class="controls">
    <input id="q" type="search" placeholder="Filter by any text: path, field, error" autocomplete="off">
    <select id="tag"><option value="">All tags</option></select>
    <div id="statuses" role="group" aria-label="Status"></div>
  </div>
  <p id="count" aria-live="polite"></p>
</header>
<main id="grid"></main>
<div id="more"></div>
<noscript><p class="noscript">This page needs JavaScript to show the images; results.csv has the same data.</p>
</noscript>
<script type="application/json" id="imgtag-meta">@FIELDS@</script>
<script type="application/json" id="imgtag-data">[
"""

_TAIL = """
]</script>
<script>@SCRIPT@</script>
</body>
</html>
"""


def ensure_thumb(out: Path, source_path: str, sha256: str | None) -> Path | None:
    """One image's thumbnail in --out/thumbs/, made now if missing (the review page asks for them one at a time,
    as they scroll into view; the contact sheet reuses them). None when it cannot be made."""
    if not sha256 or not _HEX.match(sha256):
        return None
    target = out / thumb_name(sha256)
    if not target.exists():
        _make_thumbs([(source_path, thumb_name(sha256))], out)
    return target if target.exists() else None
