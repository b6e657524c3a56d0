"""A quick yes to "does this answer fit the schema?" for the schemas presets use, before jsonschema is asked.

jsonschema walks its validator machinery for every keyword of every answer (descend, evolve, a type checker per
`type`): about 0.15 ms of the main process's CPU per answer, for answers that are valid nearly always. A schema made
only of the keywords below is compiled once into plain checks; an answer they accept is valid. Anything else
(an answer they refuse, a schema with other keywords: `$ref`, `anyOf`, `format`, ...) goes to jsonschema as before,
which alone words the errors. So the checks may refuse what jsonschema accepts, never the reverse: each one is at
least as strict as the keyword it stands for (enum compares type and value; uniqueItems only decides for strings).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Keywords that assert nothing (draft 2020-12 annotations): skipped.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
                          "$comment", "$schema"})

_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


class _Unsupported(Exception):
    """The schema uses something these checks do not cover: jsonschema alone decides."""


def compile_check(schema: Any) -> Check | None:
    """Checks for `schema`, or None when it uses a keyword they do not cover."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _compile(schema: Any) -> Check:
    if schema is True or schema == {}:
        return lambda v: True
    if not isinstance(schema, dict):
        raise _Unsupported
    checks: list[Check] = []
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        maker = _KEYWORDS.get(key)
        if maker is None:
            raise _Unsupported
        checks.append(maker(value, schema))
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _type(value: Any, schema: dict[str, Any]) -> Check:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
        raise _Unsupported
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def _properties(value: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(value, dict):
        raise _Unsupported
    subs = {name: _compile(sub) for name, sub in value.items()}

    return lambda v: not isinstance(v, dict) or all(sub(v[name]) for name, sub in subs.items() if name in v)


def _required(value: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise _Unsupported
    names = tuple(value)
    return lambda v: not isinstance(v, dict) or all(n in v for n in names)


def _additional(value: Any, schema: dict[str, Any]) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported
    known = frozenset(schema.get("properties") or {})
    if value is False:
        return lambda v: not isinstance(v, dict) or all(k in known for k in v)
    sub = _compile(value)
    return lambda v: not isinstance(v, dict) or all(k in known or sub(item) for k, item in v.items())


def _items(value: Any, schema: dict[str, Any]) -> Check:
    if "prefixItems" in schema:
        raise _Unsupported
    sub = _compile(value)
    return lambda v: not isinstance(v, list) or all(sub(item) for item in v)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Unsupported
    return value


def _min_items(value: Any, schema: dict[str, Any]) -> Check:
    n = _count(value)
    return lambda v: not isinstance(v, list) or len(v) >= n


def _max_items(value: Any, schema: dict[str, Any]) -> Check:
    n = _count(value)
    return lambda v: not isinstance(v, list) or len(v) <= n


def _min_length(value: Any, schema: dict[str, Any]) -> Check:
    n = _count(value)
    return lambda v: not isinstance(v, str) or len(v) >= n  # code points, as jsonschema counts


def _max_length(value: Any, schema: dict[str, Any]) -> Check:
    n = _count(value)
    return lambda v: not isinstance(v, str) or len(v) <= n


def _unique(value: Any, schema: dict[str, Any]) -> Check:
    if value is False:
        return lambda v: True
    if value is not True:
        raise _Unsupported
    # Only strings decide here (1 and True, 1 and 1.0: jsonschema's own equality): any other item says "ask it".
    return lambda v: not isinstance(v, list) or (all(isinstance(i, str) for i in v) and len(set(v)) == len(v))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b and (not isinstance(a, (dict, list)))


def _enum(value: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(value, list):
        raise _Unsupported
    options = list(value)
    return lambda v: any(_same(v, o) for o in options)


def _const(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: _same(v, value)


def _pattern(value: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(value, str):
        raise _Unsupported
    try:
        search = re.compile(value).search
    except re.error:
        raise _Unsupported from None
    return lambda v: not isinstance(v, str) or search(v) is not None  # jsonschema searches, unanchored


def _bound(value: Any, ok: Callable[[Any, Any], bool]) -> Check:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Unsupported
    return lambda v: isinstance(v, bool) or not isinstance(v, (int, float)) or ok(v, value)


_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], Check]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "items": _items,
    "minItems": _min_items,
    "maxItems": _max_items,
    "minLength": _min_length,
    "maxLength": _max_length,
    "uniqueItems": _unique,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minimum": lambda value, schema: _bound(value, lambda v, b: v >= b),
    "maximum": lambda value, schema: _bound(value, lambda v, b: v <= b),
    "exclusiveMinimum": lambda value, schema: _bound(value, lambda v, b: v > b),
    "exclusiveMaximum": lambda value, schema: _bound(value, lambda v, b: v < b),
}
