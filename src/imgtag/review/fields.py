"""What a preset's fields allow, read from its full JSON Schema: how the page edits each field (a choice for an
enum, chips for a list, text with its length limit) and the check every written value passes first."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator

from imgtag.validate.parse import parse_object


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "list" | "enum" | "text" | "number" | "boolean" | "json"
    description: str = ""
    choices: tuple[Any, ...] = ()  # enum values (of the field, or of a list's items)
    max_length: int | None = None  # text: of the value; list: of each item
    min_items: int | None = None
    max_items: int | None = None
    required: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "choices": list(self.choices), "max_length": self.max_length, "min_items": self.min_items,
                "max_items": self.max_items, "required": self.required}


def _resolve(node: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref ("#/$defs/x") so a field's editor sees what it points to."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/") and seen < 8:
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node, seen = target, seen + 1
    return node if isinstance(node, dict) else {}


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    return set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()


def field_spec(name: str, node: Any, schema: dict[str, Any], required: bool) -> FieldSpec:
    node = _resolve(node, schema)
    types = _types(node) - {"null"}
    desc = str(node.get("description") or "")
    if "array" in types:
        items = _resolve(node.get("items", {}), schema)
        return FieldSpec(name, "list", desc, tuple(items.get("enum") or ()), items.get("maxLength"),
                         node.get("minItems"), node.get("maxItems"), required)
    if node.get("enum"):
        return FieldSpec(name, "enum", desc, tuple(node["enum"]), required=required)
    if "string" in types:
        return FieldSpec(name, "text", desc, max_length=node.get("maxLength"), required=required)
    if types & {"number", "integer"}:
        return FieldSpec(name, "number", desc, required=required)
    if types == {"boolean"}:
        return FieldSpec(name, "boolean", desc, required=required)
    return FieldSpec(name, "json", desc, required=required)


class Fields:
    """The target's fields in order, with checks against the preset's full schema."""

    def __init__(self, names: list[str], schema: dict[str, Any] | None, list_fields: set[str] | None = None) -> None:
        self.names = list(names)
        self.schema = schema or {"type": "object"}
        props = self.schema.get("properties") or {}
        required = set(self.schema.get("required") or [])
        self.specs = {n: field_spec(n, props.get(n, {}), self.schema, n in required) for n in self.names}
        for n in list_fields or ():  # a stored schema-less target still knows its list fields
            if n in self.specs and self.specs[n].kind != "list":
                self.specs[n] = FieldSpec(n, "list")

    @cached_property
    def list_names(self) -> list[str]:
        return [n for n in self.names if self.specs[n].kind == "list"]

    def check_object(self, fields: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The whole current object checked (strings trimmed) against the full schema: (fields, None) or
        (None, reason). Unknown names are refused here, whatever the schema says."""
        unknown = [k for k in fields if k not in self.specs]
        if unknown:
            return None, f"no field named {unknown[0]!r} in this preset (fields: {', '.join(self.names)})"
        parsed = parse_object(fields, self.schema)
        if parsed.error is not None:
            return None, parsed.error.removeprefix("schema: ")
        return parsed.fields, None

    def _validator(self, name: str) -> Draft202012Validator:
        cache = self.__dict__.setdefault("_validators", {})
        if name not in cache:
            props = (self.schema.get("properties") or {}).get(name, {})
            cache[name] = Draft202012Validator({**self.schema, "properties": {name: props}, "required": [],
                                                "additionalProperties": True})
        return cache[name]

    def check_value(self, name: str, value: Any) -> str | None:
        """Why one field's new value is refused (None: fine). Fast enough for a bulk operation on every image:
        the common keywords are checked directly (jsonschema walks 100,000 tag lists in seconds), anything else
        by the full validator, which also words every refusal."""
        if name not in self.specs:
            return f"no field named {name!r} in this preset (fields: {', '.join(self.names)})"
        fast = self.__dict__.setdefault("_fast", {})
        if name not in fast:
            node = (self.schema.get("properties") or {}).get(name, {})
            fast[name] = fast_check(node)
        quick = fast[name]
        if quick is not None and quick(value):
            return None
        if quick is None and self._validator(name).is_valid({name: value}):
            return None
        parsed = parse_object({name: value}, {**self.schema, "required": []})
        return (parsed.error or "invalid value").removeprefix("schema: ")


# Keywords fast_check decides by itself; a schema using any other one goes to jsonschema.
_FAST_KEYWORDS = frozenset({"type", "enum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
                            "uniqueItems", "items", "description", "title", "examples", "default"})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str), "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def fast_check(node: Any) -> Callable[[Any], bool] | None:
    """A plain-Python validity test for a field schema made of common keywords (None: use jsonschema). It only
    ever says "valid" when jsonschema would; a refusal is worded by jsonschema."""
    if not isinstance(node, dict) or set(node) - _FAST_KEYWORDS:
        return None
    types = node.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    if any(t not in _TYPES for t in names):
        return None
    item_check = fast_check(node["items"]) if "items" in node else None
    if "items" in node and item_check is None:
        return None
    pattern = re.compile(node["pattern"]) if isinstance(node.get("pattern"), str) else None
    enum = node.get("enum")
    seen: dict[Any, bool] = {}

    def check(value: Any) -> bool:
        if names and not any(_TYPES[t](value) for t in names):
            return False
        if enum is not None and not any(value == e and type(value) is type(e) for e in enum):
            return False
        if isinstance(value, str):
            if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", len(value)):
                return False
            if pattern is not None and not pattern.search(value):
                return False
        if isinstance(value, list):
            if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
                return False
            if node.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
                return False
            if item_check is not None:
                for item in value:
                    hashable = item if isinstance(item, (str, int, float, bool, type(None))) else None
                    if hashable is None or (item, type(item)) not in seen:
                        ok = item_check(item)
                        if hashable is None:
                            if not ok:
                                return False
                            continue
                        seen[(item, type(item))] = ok
                    if not seen[(item, type(item))]:
                        return False
        return True

    return check
