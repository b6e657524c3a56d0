"""Fit a preset's full JSON Schema to what a provider's constrained decoder accepts.

A preset keeps ONE full schema (draft 2020-12) with every constraint the user cares about. Providers
each accept only a subset: Anthropic structured outputs reject minLength/maxLength, minItems above 1,
numeric bounds and any additionalProperties other than false; OpenAI strict mode wants every property
required and every object closed. The transforms here drop what a provider would reject and copy it
into the field's description as plain words, so the model still sees the limit. Nothing is lost: the
validator (imgtag.validate.parse) always checks answers against the FULL schema, which is where the dropped
constraints are enforced.

The transforms work on whitelists rather than blacklists: a keyword we do not know a provider accepts
is described, not sent, because an unknown keyword costs a 400 on every request of a run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Iterator
from typing import Any, Literal

Dialect = Literal["anthropic", "openai"]

# Where draft 2020-12 nests subschemas: one schema, a name -> schema map, or a list of schemas.
SUBSCHEMA_SINGLE = frozenset({
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
})
SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
SUBSCHEMA_LIST = frozenset({"prefixItems", "anyOf", "allOf", "oneOf"})

# Pure annotations: they never change which answers are valid, so providers are spared them.
ANNOTATIONS = frozenset({
    "title", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment", "$schema", "$id",
    "$anchor", "$dynamicAnchor", "$vocabulary", "contentEncoding", "contentMediaType",
})

# Every keyword of draft 2020-12 (plus the legacy "definitions"). Preset loading rejects anything else,
# because a typo such as "max_items" would otherwise be silently ignored by every validator.
KNOWN_KEYWORDS = frozenset({
    *SUBSCHEMA_SINGLE, *SUBSCHEMA_MAP, *SUBSCHEMA_LIST, *ANNOTATIONS,
    "$ref", "$dynamicRef", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "maxContains", "minContains", "maxProperties", "minProperties", "required", "dependentRequired",
    "format", "description",
})

# Structure every provider understands; additionalProperties is rewritten, never copied.
_STRUCTURAL = frozenset({"type", "enum", "const", "$ref", "required", "description"})

# String formats each provider's decoder documents as supported.
_ANTHROPIC_FORMATS = frozenset({
    "date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid",
})
_OPENAI_FORMATS = frozenset({
    "date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid",
})
# OpenAI strict mode documents these constraints; vLLM (xgrammar/guidance) and Ollama (llama.cpp
# grammars) enforce them too, which matters for small local models that overshoot "10 to 30 keywords".
_OPENAI_KEPT = frozenset({
    "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minItems", "maxItems",
})


# Transformed schemas by (id of the source schema, dialect): every request of a run sends the same one, and
# transforming it (a deep copy with constraint phrases) cost more than building the rest of the request. The
# source is kept beside its result, so its id cannot be reused; a preset's schema is not changed after loading.
_TRANSFORMED: dict[tuple[int, str], tuple[dict[str, Any], dict[str, Any]]] = {}
_TRANSFORMED_MAX = 64


def _transformed(schema: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """The schema in `dialect`, made once per schema; callers share the result and must not change it."""
    key = (id(schema), dialect)
    hit = _TRANSFORMED.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    result = _transform(schema, dialect)
    if len(_TRANSFORMED) >= _TRANSFORMED_MAX:
        _TRANSFORMED.clear()
    _TRANSFORMED[key] = (schema, result)
    return result


def to_anthropic_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema for Anthropic `output_config.format` / strict tools; the input is never mutated, and the
    result is shared by every caller with the same schema (read it, copy it to change it)."""
    return _transformed(schema, "anthropic")


def to_openai_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema for an OpenAI-style strict `response_format` (also accepted by vLLM and Ollama).

    Every object is closed and lists all its properties as required; a property that is optional in
    the full schema becomes nullable instead, and the validator reads a null there as "absent". Shared, as
    `to_anthropic_schema`'s result."""
    return _transformed(schema, "openai")


# What a schema says about an answer's shape: which fields, of which types, how they nest. Everything else
# (lengths, counts, ranges, patterns, formats, enums) is about the values a writer chooses.
_SHAPE = frozenset({"type", "required", "additionalProperties", "$ref", "$defs", "definitions", "properties",
                    "items", "prefixItems", "anyOf", "allOf", "oneOf"})


def shape_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with only its shape: the fields present, with their types. For an API that cannot be asked for
    a schema (the hosted tag API), whose tag count and text lengths are its own choice, not a broken promise.
    oneOf becomes anyOf: alternatives that differed only by a dropped limit must not now exclude each other."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SHAPE:
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: shape_of(sub) if isinstance(sub, dict) else sub for name, sub in value.items()}
        elif key in ("anyOf", "allOf", "oneOf", "prefixItems") and isinstance(value, list):
            out["anyOf" if key == "oneOf" else key] = [shape_of(sub) if isinstance(sub, dict) else sub
                                                       for sub in value]
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = shape_of(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def describe_constraints(schema: dict[str, Any]) -> list[str]:
    """Human lines such as "description: at most 50 characters", in schema order, for prompts."""
    lines: list[str] = []
    for path, node in _walk_named(schema, ""):
        keys = [k for k in node if k not in _NOT_CONSTRAINTS]
        phrases = constraint_phrases(node, keys)
        if phrases:
            lines.append(f"{path or '(root)'}: {'; '.join(phrases)}")
    return lines


def iter_subschemas(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (dotted path, subschema) for node and every schema nested in it, node first."""
    yield path, node
    for key, value in node.items():
        here = f"{path}.{key}" if path else key
        if key in SUBSCHEMA_SINGLE and isinstance(value, dict):
            yield from iter_subschemas(value, here)
        elif key in SUBSCHEMA_MAP and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, dict):
                    yield from iter_subschemas(sub, f"{here}.{name}")
        elif key in SUBSCHEMA_LIST and isinstance(value, list):
            for i, sub in enumerate(value):
                if isinstance(sub, dict):
                    yield from iter_subschemas(sub, f"{here}.{i}")


def is_object_schema(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def is_array_schema(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "array" or (isinstance(kind, list) and "array" in kind)


# -- the transform -----------------------------------------------------------------------------------


def _transform(node: Any, dialect: Dialect) -> Any:
    if not isinstance(node, dict):
        return copy.deepcopy(node)  # boolean schemas (true/false) have nothing to strip
    out: dict[str, Any] = {}
    stripped: list[str] = []
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _transform(sub, dialect) for name, sub in value.items()}
        elif key in ("anyOf", "allOf") and isinstance(value, list):
            out.setdefault(key, []).extend(_transform(sub, dialect) for sub in value)
        elif key == "oneOf" and isinstance(value, list):
            # Decoders know anyOf only; exclusivity is checked locally against the full schema.
            out.setdefault("anyOf", []).extend(_transform(sub, dialect) for sub in value)
        elif key == "items" and isinstance(value, dict):
            out[key] = _transform(value, dialect)
        elif key == "additionalProperties" or key in ANNOTATIONS:
            continue
        elif key in _STRUCTURAL or _dialect_keeps(dialect, key, value):
            out[key] = copy.deepcopy(value)
        else:
            stripped.append(key)
    if is_object_schema(node):
        out.setdefault("properties", {})
        out["additionalProperties"] = False
        if dialect == "openai":
            _require_all(out)
    if stripped:
        phrases = constraint_phrases(node, stripped)
        base = str(out.get("description", "")).rstrip()
        note = "; ".join(phrases)
        out["description"] = f"{base} ({note})" if base else note[:1].upper() + note[1:]
    return out


def _dialect_keeps(dialect: Dialect, key: str, value: Any) -> bool:
    if dialect == "anthropic":
        if key == "minItems":
            return value in (0, 1) and not isinstance(value, bool)
        return key == "format" and value in _ANTHROPIC_FORMATS
    if key == "format":
        return value in _OPENAI_FORMATS
    return key in _OPENAI_KEPT


def _require_all(obj: dict[str, Any]) -> None:
    """OpenAI strict: every property required; optional ones may be null instead of missing."""
    required = set(obj.get("required", []))
    props: dict[str, Any] = obj["properties"]
    for name, sub in props.items():
        if name not in required and isinstance(sub, dict):
            props[name] = _nullable(sub)
    obj["required"] = list(props)


def _nullable(sub: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in sub:
        # Siblings of $ref are not reliably honoured, so wrap instead of annotating.
        return {"anyOf": [sub, {"type": "null"}]}
    if "anyOf" in sub:
        if {"type": "null"} not in sub["anyOf"]:
            sub["anyOf"].append({"type": "null"})
        return sub
    kind = sub.get("type")
    if isinstance(kind, str) and kind != "null":
        sub["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        sub["type"] = [*kind, "null"]
    if "const" in sub:
        sub["enum"] = [sub.pop("const"), None]
    elif "enum" in sub and None not in sub["enum"]:
        sub["enum"] = [*sub["enum"], None]
    return sub


# -- constraints in words ----------------------------------------------------------------------------

# Keywords that are structure rather than a limit on values (the walkers descend into them instead).
_NOT_CONSTRAINTS = frozenset({
    *ANNOTATIONS, "properties", "$defs", "definitions", "anyOf", "oneOf", "allOf", "items", "type", "$ref",
    "required", "description", "additionalProperties",
})


def _walk_named(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Like iter_subschemas, but paths read like data: "tags (each)", "dimensions.width"."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk_named(sub, f"{path}.{name}" if path else str(name))
    if isinstance(node.get("items"), dict):
        yield from _walk_named(node["items"], f"{path} (each)")
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key) or []:
            yield from _walk_named(sub, path)  # alternatives describe the same value


def _plural(n: Any, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def constraint_phrases(node: dict[str, Any], keys: Collection[str]) -> list[str]:
    """Words for the given constraint keywords of node, pairing min/max into one range."""
    wanted = set(keys)
    phrases: list[str] = []

    def get(key: str) -> Any:
        return node.get(key) if key in wanted else None

    lo, hi = get("minLength"), get("maxLength")
    if lo is not None and hi is not None:
        phrases.append(f"{lo} to {_plural(hi, 'character', 'characters')}")
    elif hi is not None:
        phrases.append(f"at most {_plural(hi, 'character', 'characters')}")
    elif lo == 1:
        phrases.append("must not be empty")
    elif lo is not None:
        phrases.append(f"at least {_plural(lo, 'character', 'characters')}")

    lo, hi = get("minItems"), get("maxItems")
    if lo is not None and hi is not None:
        phrases.append(f"{lo} to {_plural(hi, 'item', 'items')}")
    elif hi is not None:
        phrases.append(f"at most {_plural(hi, 'item', 'items')}")
    elif lo is not None:
        phrases.append(f"at least {_plural(lo, 'item', 'items')}")

    lo, hi = get("minimum"), get("maximum")
    if lo is not None and hi is not None:
        phrases.append(f"between {lo} and {hi}")
    elif lo is not None:
        phrases.append(f"at least {lo}")
    elif hi is not None:
        phrases.append(f"at most {hi}")
    if get("exclusiveMinimum") is not None:
        phrases.append(f"greater than {node['exclusiveMinimum']}")
    if get("exclusiveMaximum") is not None:
        phrases.append(f"less than {node['exclusiveMaximum']}")
    if get("multipleOf") is not None:
        phrases.append(f"a multiple of {node['multipleOf']}")

    lo, hi = get("minProperties"), get("maxProperties")
    if lo is not None:
        phrases.append(f"at least {_plural(lo, 'field', 'fields')}")
    if hi is not None:
        phrases.append(f"at most {_plural(hi, 'field', 'fields')}")

    if "enum" in wanted and isinstance(node.get("enum"), list):
        phrases.append("one of: " + ", ".join(_json(v) for v in node["enum"]))
    if "const" in wanted and "const" in node:
        phrases.append(f"exactly {_json(node['const'])}")
    if get("pattern") is not None:
        phrases.append(f"must match the regular expression {node['pattern']}")
    if get("format") is not None:
        phrases.append(f"format: {node['format']}")
    if get("uniqueItems") is True:
        phrases.append("no duplicate items")

    handled = {
        "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "minProperties", "maxProperties", "enum", "const", "pattern",
        "format", "uniqueItems",
    }
    for key in node:
        # Anything rarer (not, if/then, dependentRequired, ...) is shown as JSON: exact, if terse.
        if key in wanted and key not in handled and key not in _NOT_CONSTRAINTS:
            phrases.append(f"{key}: {_json(node[key])}")
    return phrases
