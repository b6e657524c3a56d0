"""Typed columns from a preset's JSON Schema, for the formats whose readers want one type per column
(xlsx cells, Parquet, metadata.jsonl).

Each top-level field gets one kind: ``string``, ``integer``, ``number``, ``boolean``, a list of one of
those (``list:string`` ...), or ``json`` (nested objects and anything the schema leaves open, written as
compact JSON text, so one column never mixes types).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imgtag.export.rows import ExportContext
from imgtag.validate.parse import json_type

SCALARS = ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class Column:
    name: str  # column name in the output
    field: str  # the preset's field it holds
    kind: str  # "string" | "integer" | "number" | "boolean" | "list:<scalar>" | "json"
    required: bool = False


def field_columns(ctx: ExportContext, reserved: Iterable[str] = ()) -> list[Column]:
    """One column per preset field, in the preset's order. A field named like a fixed column of the format
    (``path``, ``status``, ``file_name`` ...) becomes ``fields.<name>`` so no two columns share a name."""
    taken = set(reserved)
    props: dict[str, Any] = (ctx.schema or {}).get("properties") or {}
    required = set((ctx.schema or {}).get("required") or [])
    columns = []
    for name in ctx.field_names:
        inferred = "list:string" if name in ctx.list_fields else "string"
        kind = kind_of(props[name]) if name in props else inferred
        columns.append(Column(f"fields.{name}" if name in taken else name, name, kind, name in required))
    return columns


def kind_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "json"
    kind = _scalar_kind(schema)
    if kind == "array":
        item = _scalar_kind(schema.get("items") or {})
        return f"list:{item}" if item in SCALARS else "json"
    return kind if kind in SCALARS else "json"


def _scalar_kind(schema: dict[str, Any]) -> str | None:
    types = schema.get("type")
    if isinstance(types, list):
        types = [t for t in types if t != "null"]
        types = types[0] if len(types) == 1 else None
    if types is None:
        for key in ("anyOf", "oneOf"):
            options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
            if len(options) == 1:
                return _scalar_kind(options[0])
        values = schema.get("enum") or ([schema["const"]] if "const" in schema else [])
        found = {_value_kind(v) for v in values}
        types = found.pop() if len(found) == 1 else None
    return "number" if types == "number" else types


_SCALAR_KINDS = frozenset({"boolean", "integer", "number", "string"})


def _value_kind(value: Any) -> str:
    kind = json_type(value)
    return kind if kind in _SCALAR_KINDS else "json"


def coerce(value: Any, kind: str) -> Any:
    """``value`` as its column's type, or None when it is missing or does not fit (never a mixed column)."""
    if value is None:
        return None
    if kind.startswith("list:"):
        if not isinstance(value, (list, tuple)):
            value = [value]
        items = (coerce(v, kind[5:]) for v in value)
        return [v for v in items if v is not None]
    if kind == "string":
        return value if isinstance(value, str) else to_json(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None
    return to_json(value)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
