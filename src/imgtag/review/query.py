"""The review list's filters, as SQL over the store: status, free text, a tag, reviewed, edited,
near-duplicates, sort. Everything is matched against current values (a person's edits over the model's
answer), so a renamed tag is found under its new name at once. Paging and filtering happen in SQLite, so a
page of 100,000 images costs what a page of 100 does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from imgtag.store import WorkKey

STATUS_SQL = ("CASE WHEN f.status <> 'ok' AND f.reason_code = 'pending' THEN 'pending'"
              " WHEN f.status <> 'ok' THEN f.status WHEN j.status = 'ok' THEN 'ok'"
              " WHEN j.status = 'failed' THEN 'failed' ELSE 'pending' END")
# Current fields as JSON: json_patch lays the edits over the model's answer (RFC 7396, as current_fields does).
CURRENT_SQL = "CASE WHEN r.edits IS NULL OR r.edits = '{}' THEN j.fields ELSE json_patch(j.fields, r.edits) END"
FROM_SQL = ("FROM files f LEFT JOIN jobs j ON j.sha256 = f.sha256 AND f.status = 'ok' AND j.preset_version = ?"
            " AND j.provider = ? AND j.model = ?"
            " LEFT JOIN review_state r ON r.file_id = f.id AND r.preset_version = ? AND r.provider = ? AND r.model = ?")
SORTS = {"id": "f.id", "-id": "f.id DESC", "path": "f.display, f.id", "-path": "f.display DESC, f.id",
         "updated": "r.updated_at IS NULL, r.updated_at DESC, f.id"}
# Statements that read every file row on purpose say why in a comment that starts with "scan:"
# (tests/test_query_plans.py holds every other statement of status, export, retry, review and run to its indexes).
# The list matches current values (edits laid over answers, as JSON) row by row in file order: a page stops at its
# last row, a total or a bulk selection reads them all.
LIST_SCAN = "/* scan: the review list filters current values row by row */ "
STATUSES = ("ok", "failed", "skipped", "pending")
FILTER_KEYS = ("status", "q", "tag", "reviewed", "edited", "near_duplicates", "rejected", "queued")


class FilterError(ValueError):
    """A filter the API refuses (400), with the reason."""


def _flag(value: Any, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise FilterError(f"{name} must be true or false, not {value!r}")


def _json_path(name: str) -> str:
    return '$."' + name.replace('"', '\\"') + '"'


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere (its % and _ taken literally)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class Where:
    sql: str
    params: list[Any]


def where_clause(filters: dict[str, Any], list_fields: list[str], key: WorkKey) -> Where:
    """The WHERE part for these filters (the same keys as the list's query string; {} is every image)."""
    unknown = [k for k in filters if k not in FILTER_KEYS and k not in ("offset", "limit", "sort", "token")]
    if unknown:
        raise FilterError(f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTER_KEYS)}")
    parts: list[str] = []
    params: list[Any] = []
    status = filters.get("status")
    if status:
        wanted = [s.strip() for s in str(status).split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            raise FilterError(f"status must be one of {', '.join(STATUSES)}, not {bad[0]!r}")
        parts.append(f"({STATUS_SQL}) IN ({','.join('?' * len(wanted))})")
        params += wanted
    q = str(filters.get("q") or "").strip()
    if q:
        parts.append(f"(f.display LIKE ? ESCAPE '\\' OR (j.status = 'ok' AND ({CURRENT_SQL}) LIKE ? ESCAPE '\\')"
                     " OR (f.status <> 'ok' AND f.reason LIKE ? ESCAPE '\\')"
                     " OR (j.status = 'failed' AND j.error_message LIKE ? ESCAPE '\\'))")
        params += [_like(q)] * 4
    tag = filters.get("tag")
    if tag not in (None, ""):
        if not list_fields:
            parts.append("0")
        else:
            exists = " OR ".join(f"EXISTS (SELECT 1 FROM json_each(({CURRENT_SQL}), ?) WHERE value = ?)"
                                 for _ in list_fields)
            # A plain text match first (the tag as JSON text in the answer or the edits) rules out most rows
            # cheaply; json_each then decides exactly, on current values.
            # (CASE, not AND: SQLite may evaluate AND terms in any order, CASE evaluates its branch only when asked.)
            parts.append(f"(j.status = 'ok' AND CASE WHEN j.fields LIKE ? ESCAPE '\\' OR r.edits LIKE ? ESCAPE '\\'"
                         f" THEN ({exists}) ELSE 0 END)")
            quoted = _like(json.dumps(str(tag), ensure_ascii=False))
            params += [quoted, quoted]
            for name in list_fields:
                params += [_json_path(name), str(tag)]
    reviewed = _flag(filters.get("reviewed"), "reviewed")
    if reviewed is not None:
        parts.append("COALESCE(r.reviewed, 0) = 1" if reviewed else "COALESCE(r.reviewed, 0) <> 1")
    rejected = _flag(filters.get("rejected"), "rejected")
    if rejected is not None:
        parts.append("COALESCE(r.reviewed, 0) = -1" if rejected else "COALESCE(r.reviewed, 0) <> -1")
    edited = _flag(filters.get("edited"), "edited")
    if edited is not None:
        parts.append("COALESCE(r.edits, '{}') <> '{}'" if edited else "COALESCE(r.edits, '{}') = '{}'")
    near = _flag(filters.get("near_duplicates"), "near_duplicates")
    if near is not None:
        dup = ("(f.near_duplicate_of IS NOT NULL OR f.duplicate_of IS NOT NULL OR EXISTS (SELECT 1 FROM files g"
               " WHERE g.near_duplicate_of = f.id OR g.duplicate_of = f.id))")
        parts.append(dup if near else f"NOT {dup}")
    queued = _flag(filters.get("queued"), "queued")
    if queued is not None:
        exists = ("EXISTS (SELECT 1 FROM review_retry q WHERE q.file_id = f.id AND q.preset_version = ?"
                  " AND q.provider = ? AND q.model = ?)")
        parts.append(exists if queued else f"NOT {exists}")
        params += [key.preset_version, key.provider, key.model]
    return Where(" AND ".join(parts) if parts else "1", params)


def key_params(key: WorkKey) -> list[Any]:
    return [key.preset_version, key.provider, key.model] * 2


def order_by(sort: Any) -> str:
    sort = str(sort or "id")
    if sort not in SORTS:
        raise FilterError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    return SORTS[sort]
