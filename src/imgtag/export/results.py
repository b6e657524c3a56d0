"""results.jsonl and results.csv: the two default outputs (SPEC "results.jsonl (contract)").

Both writers stream: they take any iterable of rows and write each row as it arrives, so a
million-image export needs no more memory than one row. Both write atomically, so a crash
mid-export leaves the previous file in place.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgtag.export.atomic import atomic_write
from imgtag.export.jsonline import one_line
from imgtag.export.rows import USAGE_KEYS, ExportContext, ResultRow

JSONL_NAME = "results.jsonl"
CSV_NAME = "results.csv"

# Contract keys first, in SPEC order; extra keys after, so readers relying on the contract
# never see them shift.
JSONL_KEYS: tuple[str, ...] = (
    "path", "sha256", "status", "fields", "error", "model", "preset", "usage", "cost_usd",
    "preset_version", "provider", "mode", "duplicate_of", "reviewed", "edited_fields",
)  # fmt: skip

# Costs are sums of per-token prices; rounding hides float noise (0.30000000000000004) and
# 8 decimals is far below a cent even for cheap models.
_COST_DECIMALS = 8

# Excel's hard limit per cell. A longer cell does not just get cut: Excel spills the rest
# into the following cells/rows and the row's columns no longer line up.
EXCEL_CELL_LIMIT = 32_767
TRUNCATION_MARKER = "…[truncated]"

# OWASP "CSV injection": spreadsheets evaluate a cell starting with these as a formula.
# Tab and CR are on the list because some importers strip them and then see the formula.
# The full-width forms are defensive: CJK input methods produce them, and a harmless quote is
# cheaper than trusting that no spreadsheet normalises them to ASCII.
_FORMULA_TRIGGERS = frozenset("=+-@\t\r＝＋－＠")

# Lone surrogates are how Python represents undecodable bytes in file names (surrogateescape);
# NUL bytes can come from model output. Neither can be written as UTF-8 text.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")

_SCALARS = (str, int, float, bool, type(None))


# ---------------------------------------------------------------------------------------------
# results.jsonl


def jsonl_record(row: ResultRow) -> dict[str, Any]:
    """The JSON object for one row, keys in JSONL_KEYS order."""
    return {
        "path": row.path,
        "sha256": row.sha256,
        "status": row.status,
        "fields": row.fields,
        "error": row.error,
        "model": row.model,
        "preset": row.preset,
        "usage": row.usage,
        "cost_usd": _round_cost(row.cost_usd),
        "preset_version": row.preset_version,
        "provider": row.provider,
        "mode": row.mode,
        "duplicate_of": row.duplicate_of,
        "reviewed": row.reviewed,
        "edited_fields": list(row.edited_fields),
    }


def jsonl_line(row: ResultRow) -> str:
    """One row as a single line of JSON (no trailing newline)."""
    record = jsonl_record(row)
    try:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        # NaN/Infinity would make the line invalid JSON for every strict reader; null is honest.
        line = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False)
    # Lone surrogates (non-UTF-8 file names: Python readers get the original bytes back with os.fsencode) and
    # U+2028/U+2029 (a line end to some readers) are escaped, so the line encodes and stays one line.
    return one_line(line)


def write_jsonl(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    """Write ``results.jsonl``: one JSON object per row, UTF-8, ``\\n`` line endings."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / JSONL_NAME
    # newline="\n": no "\r\n" translation on Windows; JSONL tools expect bare "\n".
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(jsonl_line(row))
            f.write("\n")
    return [path]


def _round_cost(cost: float | None) -> float | None:
    if cost is None or not math.isfinite(cost):
        return None
    return round(cost, _COST_DECIMALS)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# results.csv

_LEADING_COLUMNS = ("path", "status")
_TRAILING_COLUMNS = (
    "error_type", "error_message", "model", "preset", *USAGE_KEYS, "cost_usd", "sha256", "duplicate_of",
    "reviewed", "edited_fields", "error_raw_answer",
)  # fmt: skip
_FIXED_COLUMNS = frozenset(_LEADING_COLUMNS + _TRAILING_COLUMNS)


def csv_header(ctx: ExportContext) -> list[str]:
    """Column names: path, status, the preset's fields, then error/model/usage/cost columns."""
    # A user preset may well have a field called "model" (a car model) or "status"; two columns
    # with one name break DictReader and pandas, so such fields get a "fields." prefix.
    field_cols = [f"fields.{name}" if name in _FIXED_COLUMNS else name for name in ctx.field_names]
    return [neutralise(_clean(c)) for c in (*_LEADING_COLUMNS, *field_cols, *_TRAILING_COLUMNS)]


def csv_cells(row: ResultRow, ctx: ExportContext) -> list[str | int]:
    """One row flattened to CSV cells, in ``csv_header`` order, every text cell made Excel-safe."""
    fields = row.fields or {}
    error = row.error or {}
    usage = row.usage or {}
    cost = _round_cost(row.cost_usd)
    return [
        text_cell(row.path),
        text_cell(row.status),
        *(value_cell(fields.get(name)) for name in ctx.field_names),
        value_cell(error.get("type")),
        value_cell(error.get("message")),
        text_cell(row.model),
        text_cell(row.preset),
        *(_count_cell(usage.get(key)) for key in USAGE_KEYS),
        # Our own cost is never negative and is written as a plain decimal (no "1e-05"), so
        # spreadsheets read it as a number; it needs no formula guard.
        "" if cost is None else _format_decimal(cost),
        text_cell(row.sha256),
        text_cell(row.duplicate_of),
        "true" if row.reviewed else "false",
        value_cell(list(row.edited_fields)),
        text_cell(error.get("raw_answer")),
    ]


def write_csv(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    """Write ``results.csv``: UTF-8 with BOM, CRLF, minimal quoting, formula-safe cells."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / CSV_NAME
    # utf-8-sig: without the BOM Excel decodes the file as the local ANSI code page and Chinese
    # turns to mojibake. newline="" is what the csv module requires to control line endings.
    with atomic_write(path, "w", encoding="utf-8-sig", newline="") as f:
        # CRLF is Excel's own line ending; quoted cells may still hold bare "\n", as Excel allows.
        writer = csv.writer(f, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(csv_header(ctx))
        for row in rows:
            writer.writerow(csv_cells(row, ctx))
    return [path]


def text_cell(value: str | None) -> str:
    """A text cell: None -> empty; cleaned, formula-neutralised, cut to Excel's limit."""
    if value is None:
        return ""
    return _truncate(neutralise(_clean(value)))


def value_cell(value: Any) -> str:
    """A cell for any JSON value from a preset's fields (or an error)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        # A number's own text ("-3", "1.5e-07") is never a formula, and quoting it would turn
        # it into text in Excel, so numbers skip the guard.
        return _format_number(value)
    if isinstance(value, str):
        return text_cell(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        # Items are joined with "|" and not escaped: an item that itself contains "|" keeps it,
        # so splitting such a cell on "|" is ambiguous. That is rare in tags and keeps the cell
        # readable; results.jsonl is the lossless copy. Empty items are dropped.
        items = (_scalar_text(v) for v in value)
        return text_cell("|".join(item for item in items if item))
    # Nested objects (or lists of objects) as compact JSON: one cell, still machine-readable.
    return text_cell(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def neutralise(text: str) -> str:
    """Prefix ``'`` when a spreadsheet could read ``text`` as a formula.

    Checks the first character and, because some Excel versions skip leading spaces before
    deciding, the first character after any leading whitespace.
    """
    for ch in text:
        if ch in _FORMULA_TRIGGERS:
            return "'" + text
        if not ch.isspace():
            return text
    return text


def _clean(text: str) -> str:
    if _BAD_TEXT.search(text) is None:
        return text
    # In a CSV the original bytes of a non-UTF-8 name cannot be kept (Excel shows text, not
    # bytes); U+FFFD marks the spot and the sha256 column still identifies the file.
    return _BAD_TEXT.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _truncate(text: str) -> str:
    # Excel counts UTF-16 code units; a str of at most LIMIT/2 code points cannot exceed it,
    # so the (costly) UTF-16 measurement only runs for long cells.
    if len(text) <= EXCEL_CELL_LIMIT // 2:
        return text
    units = text.encode("utf-16-le")
    if len(units) // 2 <= EXCEL_CELL_LIMIT:
        return text
    keep = (EXCEL_CELL_LIMIT - len(TRUNCATION_MARKER)) * 2
    # errors="ignore" drops half of a surrogate pair cut at the boundary.
    return units[:keep].decode("utf-16-le", errors="ignore") + TRUNCATION_MARKER


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _format_number(value)
    return str(value).strip()


def _count_cell(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return value_cell(value)


def _format_number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return ""
    return repr(value)


def _format_decimal(value: float) -> str:
    text = f"{value:.{_COST_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
