"""results.xlsx: a real workbook for spreadsheet users (Excel, WPS, LibreOffice).

Why a workbook besides results.csv: LibreOffice's default CSV import ignores the UTF-8 BOM, and every CSV
import guesses types (``0012`` becomes 12, a long id becomes 1.2E+17). In a workbook each cell has its
type: text cells are written as strings (``write_string``), so nothing can become a formula or a number,
and Chinese is just Unicode. XlsxWriter (pure Python, no dependencies) streams rows in constant-memory
mode, and with a fixed creation time its output is byte-identical for identical input.

For shops: with an output language the preset has titles for (--lang zh), the header row is in that language
and the machine names go to a hidden "fields" sheet, not to a second header row: marketplace upload tools,
filters and pandas all take row 1 as the header and every row below as a product. --xlsx-thumbnails puts a
small thumbnail in the first column of each row (export/thumbs.py: made from the contact sheet's when there).
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Iterable
from itertools import chain, islice
from pathlib import Path
from typing import Any

from imgtag.export.atomic import atomic_write
from imgtag.export.columns import Column, field_columns, to_json
from imgtag.export.results import _FORMULA_TRIGGERS, _clean, _round_cost, _truncate
from imgtag.export.rows import USAGE_KEYS, ExportContext, ResultRow
from imgtag.export.spill import SpillSet
from imgtag.export.thumbs import SHEET_EDGE, THUMBS, best_source, can_have_thumb, make_thumbs, thumb_name
from imgtag.export.titles import header_titles, own_titles

XLSX_NAME = "results.xlsx"
SHEET = "results"
# Excel's sheet size; past it the rows continue on "results 2", "results 3", ...
MAX_ROWS = 1_048_576
# A fixed creation time: Excel shows it under File > Info, and a real clock would make every export differ.
FIXED_CREATED = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
# Column widths are measured on the first rows only, so memory stays flat for a million rows.
WIDTH_SAMPLE = 500
MIN_WIDTH, MAX_WIDTH = 6, 60

_LEADING = ("path", "status")
THUMB_COLUMN = "thumbnail"
FIELDS_SHEET = "fields"
# Thumbnails: made at 128 px on the long side and shown at half that, so they stay sharp on high-density
# screens and fit inside their cell with a margin (a picture inside its cell moves with it when sorted).
THUMB_EDGE, THUMB_SCALE, THUMB_MARGIN_PX = 128, 0.5, 2
THUMB_ROW_POINTS = 51.0  # 68 px: 64 px of picture and the margins
THUMB_COLUMN_WIDTH = 9.5  # characters: 71 px
_LARGER_THUMBS = (SHEET_EDGE,)  # the contact sheet's: decoded instead of the original when there
_TRAILING = ("error_type", "error_message", "model", "preset", *USAGE_KEYS, "cost_usd", "sha256", "duplicate_of",
             "error_raw_answer")


def write_xlsx(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    import xlsxwriter  # a core dependency, imported here so csv/jsonl exports do not pay for it

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / XLSX_NAME
    extra = (THUMB_COLUMN,) if ctx.xlsx_thumbnails else ()
    fields = field_columns(ctx, reserved=(*extra, *_LEADING, *_TRAILING))
    names = [*extra, *_LEADING, *(c.name for c in fields), *_TRAILING]
    header = _header(names, fields, ctx)
    lead = [None] if ctx.xlsx_thumbnails else []  # the thumbnail column holds a picture, no value
    stream = iter(rows)
    sample = list(islice(stream, WIDTH_SAMPLE))
    sample_cells = [lead + _cells(r, fields) for r in sample]
    widths = _widths(header, sample_cells)
    if ctx.xlsx_thumbnails:
        widths[0] = THUMB_COLUMN_WIDTH
    thumbs = _Thumbs(ctx) if ctx.xlsx_thumbnails else None
    with atomic_write(path, "wb") as f:
        wb = xlsxwriter.Workbook(f, {
            "constant_memory": True,  # rows go to disk as written: flat memory at any size
            "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
        })
        wb.set_properties({"created": FIXED_CREATED, "title": "imgtag results"})
        styles = _styles(wb)
        sheet, row_no = None, MAX_ROWS
        all_rows = chain(zip(sample, sample_cells, strict=True), ((r, lead + _cells(r, fields)) for r in stream))
        for number, (row, cells) in enumerate(all_rows):
            if row_no >= MAX_ROWS:
                sheet = _new_sheet(wb, SHEET if number == 0 else f"{SHEET} {number // (MAX_ROWS - 1) + 1}",
                                   header, names, widths, styles)
                row_no = 1
            if thumbs is not None:
                thumbs.want(sheet, row_no, row)
            _write_row(sheet, row_no, cells, styles, status_col=len(lead) + 1)
            row_no += 1
        if sheet is None:
            _new_sheet(wb, SHEET, header, names, widths, styles)
        if header != names:
            _fields_sheet(wb, header, names, styles)
        if thumbs is not None:
            thumbs.insert()  # before close: that is when the pictures are read into the workbook
        wb.close()
    return [path]


def _header(names: list[str], fields: list[Column], ctx: ExportContext) -> list[str]:
    """The header row: titles in the output language where there are some, else the machine names; never two
    columns with the same header."""
    of_fields = header_titles(ctx.field_titles, ctx.lang)
    titles = {**own_titles(ctx.lang), **{c.name: of_fields[c.field] for c in fields if c.field in of_fields}}
    out: list[str] = []
    for name in names:
        title = titles.get(name, name)
        out.append(title if title not in out else f"{title} ({name})")
    return out


def _fields_sheet(wb: Any, header: list[str], names: list[str], styles: dict[str, Any]) -> None:
    """The machine name of each column, for programs and for whoever maps columns to an upload template."""
    from xlsxwriter.utility import xl_col_to_name

    sheet = wb.add_worksheet(FIELDS_SHEET)
    for col, text in enumerate(("column", "header", "field")):
        sheet.write_string(0, col, text, styles["header"])
    for i, (title, name) in enumerate(zip(header, names, strict=True), start=1):
        sheet.write_string(i, 0, xl_col_to_name(i - 1))
        sheet.write_string(i, 1, title)
        sheet.write_string(i, 2, name)
    sheet.set_column(1, 2, 28)
    sheet.hide()


class _Thumbs:
    """One picture per row whose image can be read; made after the rows are streamed, inserted before close."""

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx
        self.out = ctx.out_dir
        # (sheet, row, thumbnail name, description): xlsxwriter holds every picture until the workbook closes anyway.
        self.placed: list[tuple[Any, int, str, str]] = []
        self.wanted = SpillSet()  # thumbnail name -> what to make it from, on disk

    def want(self, sheet: Any, row_no: int, row: ResultRow) -> None:
        if not can_have_thumb(row):
            return
        sheet.set_row(row_no, THUMB_ROW_POINTS)  # constant-memory mode: before the row's cells
        name = thumb_name(row.sha256 or "", THUMB_EDGE)
        self.placed.append((sheet, row_no, name, row.path))
        if name not in self.wanted and not (self.out / name).exists():
            self.wanted.add(name, best_source(row, self.out, THUMB_EDGE, _LARGER_THUMBS))

    def insert(self) -> None:
        with self.wanted:
            made, failed = make_thumbs(((src, name) for name, src in self.wanted.items()), self.out, THUMB_EDGE,
                                       len(self.wanted))
        shown = 0
        for sheet, row_no, name, description in self.placed:
            if (self.out / name).exists():
                sheet.insert_image(row_no, 0, str(self.out / name), {
                    "x_scale": THUMB_SCALE, "y_scale": THUMB_SCALE, "x_offset": THUMB_MARGIN_PX,
                    "y_offset": THUMB_MARGIN_PX, "object_position": 1, "description": description})
                shown += 1
        if self.placed:
            self.ctx.notes.append(f"xlsx: {shown} thumbnails ({made} new in {self.out / THUMBS})"
                                  + (f"; {failed} could not be made (those rows have none)" if failed else ""))


def _cells(row: ResultRow, fields: list[Column]) -> list[Any]:
    values = row.fields or {}
    error = row.error or {}
    usage = row.usage or {}
    return [
        _text(row.path), _text(row.status),
        *(_field_cell(values.get(c.field)) for c in fields),
        _text(error.get("type")), _text(error.get("message")), _text(row.model), _text(row.preset),
        *(_count(usage.get(k)) for k in USAGE_KEYS),
        _round_cost(row.cost_usd), _text(row.sha256), _text(row.duplicate_of), _text(error.get("raw_answer")),
    ]


def _field_cell(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        # Same convention as results.csv: items joined with "|", empty ones dropped.
        return _text("|".join(_item(v) for v in value if _item(v)))
    return _text(to_json(value))


def _item(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _text(value: str | None) -> str | None:
    return None if value is None else _truncate(_clean(value))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _styles(wb: Any) -> dict[str, Any]:
    return {
        "header": wb.add_format({"bold": True, "bg_color": "#E8EEF7", "bottom": 1}),
        # quotePrefix: Excel keeps "=1+2" text even after the user edits the cell; nothing shows in the cell.
        "guard": wb.add_format({"quote_prefix": True}),
        "failed": wb.add_format({"font_color": "#B00020", "bold": True}),
        "skipped": wb.add_format({"font_color": "#7A7A7A"}),
        "pending": wb.add_format({"font_color": "#8A6D00"}),
        "cost": wb.add_format({"num_format": "0.00000000"}),
    }


def _new_sheet(wb: Any, name: str, header: list[str], names: list[str], widths: list[float],
               styles: dict[str, Any]) -> Any:
    sheet = wb.add_worksheet(name)
    for col, width in enumerate(widths):
        sheet.set_column(col, col, width, styles["cost"] if names[col] == "cost_usd" else None)
    for col, name_ in enumerate(header):
        sheet.write_string(0, col, name_, styles["header"])
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, 0, len(header) - 1)
    return sheet


def _write_row(sheet: Any, row_no: int, cells: list[Any], styles: dict[str, Any], status_col: int = 1) -> None:
    for col, value in enumerate(cells):
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            sheet.write_boolean(row_no, col, value)
        elif isinstance(value, (int, float)):
            sheet.write_number(row_no, col, value)
        elif col == status_col and value in ("failed", "skipped", "pending"):
            sheet.write_string(row_no, col, value, styles[value])
        else:
            sheet.write_string(row_no, col, value, styles["guard"] if _looks_like_formula(value) else None)


def _looks_like_formula(text: str) -> bool:
    stripped = text.lstrip()
    return bool(stripped) and stripped[0] in _FORMULA_TRIGGERS


def _widths(header: list[str], sample: list[list[Any]]) -> list[float]:
    widths = [float(_display_width(h)) + 2 for h in header]
    for cells in sample:
        for col, value in enumerate(cells):
            if value is not None:
                widths[col] = max(widths[col], _display_width(_shown(value)) + 1)
    return [min(MAX_WIDTH, max(MIN_WIDTH, w)) for w in widths]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE"
    if isinstance(value, float):
        return f"{value:.8f}"
    return str(value)


def _display_width(text: str) -> int:
    # East Asian wide characters take two columns: without this, Chinese text columns come out half wide.
    first_line = text.split("\n", 1)[0][:200]
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in first_line)
