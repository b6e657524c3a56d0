"""contact-sheet.html: every image as a thumbnail with all its fields, failures with their reasons, and a
filter by text, tag and status, in one self-contained page under --out (no server, nothing loaded from
outside, opens from the file system).

Safety: model text is data, never markup. The rows are embedded as JSON in a ``<script
type="application/json">`` block with ``<``, ``>``, ``&`` and U+2028/2029 escaped (so no text can close
the block or start a tag), and the page builds its DOM with ``textContent`` only. A Content-Security-
Policy allows exactly the page's own script (by hash) and local images, so even an injected element
could not run or fetch anything.

Thumbnails go to --out/thumbs/ (export/thumbs.py: named by content hash, made by the requests' decoder in
its process pool; originals are only read). Cards are rendered in pages as the user scrolls, and images load
lazily, so 10,000 images stay fast.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from imgtag.export.atomic import atomic_write
from imgtag.export.results import _SURROGATE, _finite
from imgtag.export.rows import ExportContext, ResultRow
from imgtag.export.spill import SpillSet
from imgtag.export.thumbs import SHEET_EDGE, THUMBS, can_have_thumb, is_sha256, make_thumbs
from imgtag.export.thumbs import thumb_name as sized_thumb_name
from imgtag.util.words import failure_text

SHEET_NAME = "contact-sheet.html"
THUMB_EDGE = SHEET_EDGE


def thumb_name(sha256: str) -> str:
    return sized_thumb_name(sha256, THUMB_EDGE)


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
    # Thumbnails still to make (name -> original), on disk: memory stays flat for a million images.
    wanted = SpillSet()
    path = out / SHEET_NAME
    with wanted:
        with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(_head(script, ctx))
            first = True
            for row in rows:
                thumb = None
                if can_have_thumb(row):
                    thumb = thumb_name(row.sha256 or "")
                    if thumb not in wanted and not (out / thumb).exists():
                        wanted.add(thumb, row.source_path or "")
                f.write(("" if first else ",\n") + safe_json(_record(row, thumb)))
                first = False
            f.write(_TAIL.replace("@SCRIPT@", script))
        made, failed = make_thumbs(((src, thumb) for thumb, src in wanted.items()), out, THUMB_EDGE, len(wanted))
    if len(wanted):
        ctx.notes.append(f"html: {made} new thumbnails in {out / THUMBS}"
                         + (f", {failed} could not be made (shown as a placeholder)" if failed else ""))
    return [path]


def _record(row: ResultRow, thumb: str | None) -> dict[str, Any]:
    error = row.error or {}
    return {"path": row.path, "status": row.status, "thumb": thumb, "fields": row.fields, "error": row.error,
            "error_text": failure_text(str(error.get("type") or "error"), str(error.get("message") or ""))
            if row.error else None,
            "no_preview": _no_preview(error.get("type")), "duplicate_of": row.duplicate_of}


# The decoder's reason codes (ingest/preprocess.py) for a file it could not read at all.
_UNREADABLE = frozenset({"empty", "not_image", "unsupported", "truncated", "corrupt", "unreadable"})


def _no_preview(reason_code: Any) -> str:
    """What stands in for a missing thumbnail: an image refused for its size was read, it is not unreadable."""
    if reason_code == "too_small":
        return "too small to tag"
    if reason_code == "bomb":
        return "too many pixels to decode"
    if reason_code in _UNREADABLE:
        return "not an image we could read"
    return "no preview"


def _asset(name: str) -> str:
    return (resources.files("imgtag.export") / name).read_text(encoding="utf-8")


def _head(script: str, ctx: ExportContext) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'self' data:; "
           "base-uri 'none'; form-action 'none'")
    fields = safe_json({"fields": ctx.field_names, "lists": sorted(ctx.list_fields)})
    return (_HEAD.replace("@CSP@", csp).replace("@CSS@", _asset("contact_sheet.css"))
            .replace("@TARGET@", html.escape(target_line(ctx))).replace("@FIELDS@", fields))


def target_line(ctx: ExportContext) -> str:
    """What produced this sheet: preset (language), provider and model, and when that target was run, so a sheet
    left from an earlier target (or copied elsewhere) still says whose answers it shows."""
    preset = ctx.preset or "?"
    if ctx.lang:
        preset += f" ({ctx.lang})"
    who = " ".join(part for part in (ctx.provider, ctx.model) if part)
    when = f"run {ctx.target_date[:16].replace('T', ' ')} UTC" if ctx.target_date else ""
    return " · ".join(part for part in (f"preset {preset}", who, when) if part)


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
  <p id="target" class="target">@TARGET@</p>
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
    if not sha256 or not is_sha256(sha256):
        return None
    target = out / thumb_name(sha256)
    if not target.exists():
        make_thumbs([(source_path, thumb_name(sha256))], out, THUMB_EDGE)
    return target if target.exists() else None
