"""txt: one UTF-8 caption file per image beside it (photo.jpg -> photo.txt), as kohya_ss, TagGUI and
OneTrainer read them.

What goes in is a template over the preset's fields: ``{short_caption}``, ``{tags}`` (lists are joined
with ", ", the booru convention), or text around them (``a photo of {subject}``; ``{{`` and ``}}`` are
literal braces). It comes from ``--txt-template``, else the preset's ``txt_template`` key, else the
preset's first field. The caption is one line (kohya reads only the first line of the file), with no
trailing newline, as those tools write it themselves.

An existing .txt that imgtag did not write is never silently replaced: ``--txt-existing`` says skip
(default), overwrite, append or prepend (joined with ", " on the same line); see export/beside.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from imgtag.config.options import option
from imgtag.export.beside import Tally, place
from imgtag.export.results import _clean
from imgtag.export.rows import ExportContext, ResultRow
from imgtag.export.spill import SpillSet

FORMAT = "txt"
JOIN = ", "
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")


def check_template(template: str, fields: Sequence[str]) -> None:
    """Raise ValueError with one sentence when the template names an unknown field or has a stray brace."""
    for m in _PLACEHOLDER.finditer(template):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        name = m.group(1)
        if name is None:
            raise ValueError(f"{option('txt_template')} {template!r} has a lone {token!r}; write {token * 2} for a "
                             "literal one")
        if name.strip() not in fields:
            raise ValueError(f"{option('txt_template')} names {{{name}}}, which is not a field of this preset "
                             f"(fields: {', '.join(fields)})")
    if not any(m.group(1) for m in _PLACEHOLDER.finditer(template)):
        raise ValueError(f"{option('txt_template')} {template!r} names no field; use e.g. {{{fields[0]}}}" if fields
                         else f"{option('txt_template')} names no field")


def render(template: str, fields: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return _text(fields.get((m.group(1) or "").strip()))

    text = _PLACEHOLDER.sub(sub, template)
    return _NEWLINES.sub(" ", _clean(text)).strip()


def caption_path(source: str) -> str:
    return os.path.splitext(source)[0] + ".txt"


def write_txt(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    template = ctx.txt_template or (f"{{{ctx.field_names[0]}}}" if ctx.field_names else "")
    check_template(template, ctx.field_names)
    tally = Tally(FORMAT)
    claimed = SpillSet()  # caption path -> the image whose caption it is (on disk: flat memory for any folder)

    def merge_with(ours: str) -> Any:
        def merge(kept: str, how: str) -> bytes:
            theirs = kept.strip()
            if not theirs:
                return ours.encode("utf-8")
            joined = f"{theirs}{JOIN}{ours}" if how == "append" else f"{ours}{JOIN}{theirs}"
            return joined.encode("utf-8")
        return merge

    for row in rows:
        if row.status != "ok" or not row.source_path:
            continue
        target = caption_path(row.source_path)
        if target == row.source_path or target in claimed:
            # "a.jpg" and "a.png" would share a.txt (the first in discovery order keeps it), and an image
            # whose own name ends in .txt must never be written over.
            owner = "is the image itself" if target == row.source_path else f"is {claimed.get(target)}'s caption"
            tally.add("conflict", f"{row.path} has no caption: {os.path.basename(target)} {owner}")
            continue
        claimed.add(target, row.path)
        caption = render(template, row.fields or {})
        if not caption:
            tally.add("empty")
            continue
        outcome, reason = place(target, caption.encode("utf-8"), FORMAT, ctx.ledger, existing=ctx.txt_existing,
                                merge=merge_with(caption))
        tally.add(outcome, reason)
    claimed.close()
    ctx.notes.append(tally.line(f"captions beside the images, template {template}",
                                hint="existing .txt files that imgtag did not write were left as they are "
                                     f"({option('txt_existing')} overwrite|append|prepend to change that)"))
    return []


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return JOIN.join(t for t in (_text(v).strip() for v in value) if t)
    if isinstance(value, dict):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)
