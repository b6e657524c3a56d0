"""results.parquet: typed columns for pandas, DuckDB, Polars and `datasets` (optional extra imgtag[parquet]).

JSONL leaves types to the reader's guess: a file whose first rows have ``error: null`` makes
``datasets.load_dataset("json")`` fail and DuckDB's ``read_json_auto`` count no errors. Here the schema is
explicit and derived from the preset's JSON Schema (strings, lists, numbers, booleans; every field column
nullable because failed images have none), so any reader gets exact types at any size. Rows are written
in record batches (flat memory); pyarrow's output carries no timestamps, so identical input gives
identical bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from imgtag.export.atomic import atomic_write
from imgtag.export.columns import Column, coerce, field_columns
from imgtag.export.results import _clean, _round_cost
from imgtag.export.rows import USAGE_KEYS, ExportContext, ResultRow

PARQUET_NAME = "results.parquet"
BATCH_ROWS = 10_000

_FIXED = ("path", "status", "sha256", "error_type", "error_message", "model", "preset", "preset_version",
          "provider", "mode", *USAGE_KEYS, "cost_usd", "duplicate_of", "error_raw_answer")


def arrow_schema(ctx: ExportContext) -> Any:
    import pyarrow as pa

    scalar = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(),
              "json": pa.string()}

    def arrow_type(kind: str) -> Any:
        return pa.list_(pa.field("item", scalar[kind[5:]])) if kind.startswith("list:") else scalar[kind]

    fields = field_columns(ctx, reserved=_FIXED)
    columns = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        *(pa.field(c.name, arrow_type(c.kind)) for c in fields),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("model", pa.string()),
        pa.field("preset", pa.string()),
        pa.field("preset_version", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("mode", pa.string()),
        *(pa.field(k, pa.int64()) for k in USAGE_KEYS),
        pa.field("cost_usd", pa.float64()),
        pa.field("sha256", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("error_raw_answer", pa.string()),  # a paid answer that failed validation, as it came
    ]
    return pa.schema(columns), fields


def write_parquet(rows: Iterable[ResultRow], ctx: ExportContext) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / PARQUET_NAME
    schema, fields = arrow_schema(ctx)
    stream = iter(rows)
    with atomic_write(path, "wb") as f:
        # store_schema keeps the Arrow schema (list item names, nullability) for exact round trips.
        writer = pq.ParquetWriter(f, schema, compression="zstd", store_schema=True)
        try:
            while batch := list(islice(stream, BATCH_ROWS)):
                records = [_record(r, fields) for r in batch]
                writer.write_table(pa.Table.from_pylist(records, schema=schema))
        finally:
            writer.close()
    return [path]


def _record(row: ResultRow, fields: list[Column]) -> dict[str, Any]:
    values = row.fields or {}
    error = row.error or {}
    usage = row.usage or {}
    rec: dict[str, Any] = {"path": _s(row.path) or "", "status": row.status}
    for c in fields:
        rec[c.name] = _clean_value(coerce(values.get(c.field), c.kind))
    rec.update({
        "error_type": _s(error.get("type")), "error_message": _s(error.get("message")), "model": _s(row.model),
        "preset": _s(row.preset), "preset_version": _s(row.preset_version), "provider": _s(row.provider),
        "mode": _s(row.mode), "cost_usd": _round_cost(row.cost_usd), "sha256": row.sha256,
        "duplicate_of": _s(row.duplicate_of), "error_raw_answer": _s(error.get("raw_answer")),
    })
    for k in USAGE_KEYS:
        v = usage.get(k)
        rec[k] = v if isinstance(v, int) and not isinstance(v, bool) else None
    return rec


def _s(value: Any) -> str | None:
    return None if value is None else _clean(str(value))


def _clean_value(value: Any) -> Any:
    # Parquet strings must be valid UTF-8: lone surrogates (non-UTF-8 file names) become U+FFFD.
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_clean(v) if isinstance(v, str) else v for v in value]
    return value
