"""Bulk operations of the review page, each applied to one image's current value of one field.

An operation is the JSON the API takes (docs/review.md): add_tag, remove_tag, rename_tag, set, replace, approve.
`parse_op` checks it once (one sentence when it is wrong); `Op.apply` gives a field's new value, or the same
value when the operation changes nothing for that image (which is then not counted and gets no version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

OPS = ("add_tag", "remove_tag", "rename_tag", "set", "replace", "approve")
MAX_PATTERN = 1000


class OpError(ValueError):
    """An operation the API refuses (422), with the reason."""


@dataclass(frozen=True)
class Op:
    name: str
    field: str | None = None
    tag: Any = None
    old: Any = None
    new: Any = None
    value: Any = None
    pattern: re.Pattern[str] | None = None
    replacement: str = ""

    def apply(self, current: Any) -> Any:
        if self.name == "add_tag":
            items = list(current or [])
            return items if self.tag in items else [*items, self.tag]
        if self.name == "remove_tag":
            return [t for t in current or [] if t != self.tag]
        if self.name == "rename_tag":
            if self.old not in (current or []):
                return current
            out: list[Any] = []
            for t in current:  # a rename onto a tag the image already has merges the two
                t = self.new if t == self.old else t
                if t not in out:
                    out.append(t)
            return out
        if self.name == "set":
            return self.value
        if self.name == "replace":
            assert self.pattern is not None
            if isinstance(current, str):
                return self.pattern.sub(self.replacement, current)
            if isinstance(current, list):
                return [self.pattern.sub(self.replacement, t) if isinstance(t, str) else t for t in current]
            return current
        return current


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise OpError(f"{body.get('op')}: {key!r} must be a non-empty string")
    return value.strip()


def parse_op(body: dict[str, Any], field_names: list[str], list_names: list[str]) -> Op:
    name = body.get("op")
    if name not in OPS:
        raise OpError(f"unknown op {name!r}; one of: {', '.join(OPS)}")
    if name == "approve":
        return Op("approve")
    field = body.get("field")
    if field not in field_names:
        raise OpError(f"{name}: no field named {field!r} (fields: {', '.join(field_names)})")
    if name in ("add_tag", "remove_tag", "rename_tag") and field not in list_names:
        raise OpError(f"{name}: {field} is not a list of tags (lists: {', '.join(list_names) or 'none'})")
    if name in ("add_tag", "remove_tag"):
        return Op(name, field, tag=_text(body, "tag"))
    if name == "rename_tag":
        return Op(name, field, old=_text(body, "from"), new=_text(body, "to"))
    if name == "set":
        if "value" not in body:
            raise OpError("set: 'value' is missing")
        value = body["value"]
        return Op(name, field, value=value.strip() if isinstance(value, str) else value)
    pattern = body.get("pattern")
    replacement = body.get("replacement", "")
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
        raise OpError(f"replace: 'pattern' must be a non-empty string of at most {MAX_PATTERN} characters")
    if not isinstance(replacement, str):
        raise OpError("replace: 'replacement' must be a string")
    if body.get("regex"):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise OpError(f"replace: the pattern is not a valid regular expression ({exc})") from None
    else:
        compiled = re.compile(re.escape(pattern))
        replacement = replacement.replace("\\", "\\\\")  # literal text, not group references
    return Op(name, field, pattern=compiled, replacement=replacement)
