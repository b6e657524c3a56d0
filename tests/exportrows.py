"""ResultRow builders for exporter tests: real files on disk, hostile model text on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from imgtag.export import ExportContext, ResultRow

FIELDS = ["tags", "category", "description", "color", "style"]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tags", "category", "description", "color", "style"],
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "category": {"type": "string"},
        "description": {"type": "string"},
        "color": {"type": "string"},
        "style": {"type": "string"},
    },
}
# What a hostile or careless model might answer: formulas, markup, CDATA ends, quotes, leading zeros.
HOSTILE: dict[str, Any] = {
    "tags": ["=1+2", "<script>alert(1)</script>", "]]>", "0012", "中文标签"],
    "category": "\"quoted\" 'single' & <b>bold</b>",
    "description": "</script><img src=x onerror=alert(1)> =SUM(A1) \u2028 line",
    "color": "@cmd|' /C calc'!A0",
    "style": "+1-1",
}
USAGE = {"input_tokens": 1200, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 900}


def image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (320, 240)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=90)
    return path


def ok(src: Path, root: Path | None, fields: dict[str, Any] | None = HOSTILE, **kw: Any) -> ResultRow:
    rel = src.relative_to(root).as_posix() if root else str(src)
    base: dict[str, Any] = {
        "path": rel, "sha256": "ab" * 32, "status": "ok", "error": None,
        "fields": dict(fields) if fields is not None else None,
        "model": "claude-haiku-4-5", "preset": "ecommerce", "preset_version": "v1", "provider": "anthropic",
        "usage": dict(USAGE), "cost_usd": 0.1 + 0.2, "mode": "sync", "source_path": str(src),
        "root": str(root) if root else None,
    }
    base.update(kw)
    return ResultRow(**base)


def failed(src: Path, root: Path | None, message: str = "<b>refused</b> =1+2") -> ResultRow:
    return ok(src, root, status="failed", fields=None, error={"type": "refusal", "message": message},
              usage=dict(USAGE), cost_usd=0.01)


def skipped(src: Path, root: Path | None) -> ResultRow:
    return ok(src, root, status="skipped", fields=None, sha256=None,
              error={"type": "corrupt", "message": "cannot identify image file"}, usage=None, cost_usd=None,
              model=None, provider=None, mode=None)


def context(out: Path, **kw: Any) -> ExportContext:
    return ExportContext(out_dir=out, field_names=list(FIELDS), list_fields={"tags"}, schema=SCHEMA, **kw)
