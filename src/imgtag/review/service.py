"""Reads and writes of a target's review: what the API routes call (docs/review.md).

Writes go only to the review tables (store/review.py), each one short transaction; nothing here ever changes
a model's answer, a file row or a job, so `imgtag run` can keep writing the same store meanwhile.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from imgtag.review.fields import Fields
from imgtag.review.ops import Op, OpError, parse_op
from imgtag.review.query import (
    CURRENT_SQL,
    FROM_SQL,
    LIST_SCAN,
    STATUS_SQL,
    FilterError,
    key_params,
    order_by,
    where_clause,
)
from imgtag.store import WorkKey
from imgtag.store import review as rs
from imgtag.store.review import APPROVED, NOT_REVIEWED, REJECTED, Change, StateRow, current_fields, edited_names

MAX_LIMIT = 500
BULK_CHUNK = 10_000  # images read, changed and written at a time inside a bulk operation's one transaction
T = TypeVar("T")


class ReviewError(Exception):
    """A request the API refuses: HTTP status and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_ITEM_SQL = (
    "SELECT f.id, f.display, f.path, f.reason_code, f.reason, f.duplicate_of, f.near_duplicate_of,"
    f" ({STATUS_SQL}) AS st, j.fields, j.error_type, j.error_message, r.edits, r.reviewed,"
    " (SELECT 1 FROM review_retry q WHERE q.file_id = f.id AND q.preset_version = ? AND q.provider = ?"
    " AND q.model = ?) AS queued ")


class Review:
    """One target's review over one SQLite connection, used from the server's worker threads one at a time."""

    def __init__(self, db: sqlite3.Connection, meta: dict[str, Any]) -> None:
        self.db = db
        self.meta = meta
        self.key = WorkKey(meta["preset_version"], meta["provider"], meta["model"])
        self.fields = Fields(list(meta["fields"]), meta.get("schema"), set(meta.get("list_fields") or []))
        self._lock = threading.Lock()

    def locked(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return fn()

    # -- reads ---------------------------------------------------------------------------------

    def _item(self, r: sqlite3.Row) -> dict[str, Any]:
        edits = rs.load_edits(r["edits"])
        status = r["st"]
        fields = current_fields(json.loads(r["fields"]), edits) if status == "ok" and r["fields"] else None
        if fields is not None:
            fields = {name: fields.get(name) for name in self.fields.names} | fields
        error = None
        if status == "failed" and r["error_type"] is None and r["reason_code"]:
            error = {"type": r["reason_code"], "message": r["reason"] or ""}
        elif status == "failed":
            error = {"type": r["error_type"] or "error", "message": r["error_message"] or ""}
        elif status == "skipped":
            error = {"type": r["reason_code"] or "skipped", "message": r["reason"] or ""}
        return {"id": r["id"], "path": r["display"], "status": status, "fields": fields,
                "reviewed": r["reviewed"] == APPROVED and status == "ok", "rejected": r["reviewed"] == REJECTED,
                "edited_fields": edited_names(edits, self.fields.names) if status == "ok" else [],
                "error": error, "queued": bool(r["queued"]), "duplicate_of": r["duplicate_of"],
                "near_duplicate_of": r["near_duplicate_of"]}

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            offset = max(0, int(params.get("offset") or 0))
            limit = min(MAX_LIMIT, max(1, int(params.get("limit") or 50)))
        except ValueError:
            raise ReviewError(400, "offset and limit must be whole numbers") from None
        try:
            where = where_clause(params, self.fields.list_names, self.key)
            order = order_by(params.get("sort"))
        except FilterError as exc:
            raise ReviewError(400, str(exc)) from None
        kp = key_params(self.key)
        (total,) = self.db.execute(f"{LIST_SCAN}SELECT COUNT(*) {FROM_SQL} WHERE {where.sql}",
                                   [*kp, *where.params]).fetchone()
        rows = self.db.execute(f"{LIST_SCAN}{_ITEM_SQL} {FROM_SQL} WHERE {where.sql} ORDER BY {order} LIMIT ? OFFSET ?",
                               [*kp[:3], *kp, *where.params, limit, offset]).fetchall()
        return {"total": total, "offset": offset, "limit": limit, "items": [self._item(r) for r in rows]}

    def item(self, file_id: int) -> dict[str, Any]:
        kp = key_params(self.key)
        row = self.db.execute(f"{_ITEM_SQL} {FROM_SQL} WHERE f.id = ?", [*kp[:3], *kp, file_id]).fetchone()
        if row is None:
            raise ReviewError(404, f"no image with id {file_id}")
        return self._item(row)

    def source_path(self, file_id: int) -> str | None:
        """The original's path, looked up by id (a request never names a path)."""
        row = self.db.execute("SELECT path FROM files WHERE id = ?", (file_id,)).fetchone()
        return os.fsdecode(row[0]) if row else None

    def file_row(self, file_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT path, sha256, format FROM files WHERE id = ?", (file_id,)).fetchone()

    def tags(self, field: str | None = None) -> list[dict[str, Any]]:
        names = self.fields.list_names if field in (None, "") else [field]
        if any(n not in self.fields.list_names for n in names):
            raise ReviewError(400, f"{field} is not a list field (lists: {', '.join(self.fields.list_names)})")
        counts: dict[tuple[str, str], int] = {}
        kp = key_params(self.key)
        for name in names:
            for tag, count in self.db.execute(
                    f"{LIST_SCAN}SELECT t.value, COUNT(*) {FROM_SQL}, json_each(({CURRENT_SQL}), ?) t"
                    " WHERE j.status = 'ok' AND t.type = 'text' GROUP BY t.value", [*kp, '$."' + name + '"']):
                counts[(tag, name)] = count
        return [{"tag": tag, "count": count, "field": name}
                for (tag, name), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def history(self, file_id: int) -> dict[str, Any]:
        """Version 0 is the model's answer; then every edit (single, bulk, restore, undo) and every later answer
        of the model (an image asked again), oldest first, each with the values current after it."""
        return {"id": file_id, "versions": self._versions(file_id)}

    def _versions(self, file_id: int) -> list[dict[str, Any]]:
        self.item(file_id)  # 404 for an unknown id
        answers = rs.model_answers(self.db, self.key, file_id)
        human = rs.versions_of(self.db, self.key, file_id)
        events: list[tuple[str, int, str, Any]] = [(at, 0, "model", fields) for at, fields in answers]
        events += [(v["created_at"], 1, v["kind"], v) for v in human]
        events.sort(key=lambda e: (e[0], e[1]))
        model: dict[str, Any] = answers[0][1] if answers else {}
        edits: dict[str, Any] = {}
        reviewed = NOT_REVIEWED
        out: list[dict[str, Any]] = []
        for at, _, kind, data in events:
            if kind == "model":
                model = data
            else:
                edits, reviewed = rs.load_edits(data["edits"]), data["reviewed"]
            out.append({"version": len(out), "kind": kind, "at": at,
                        "fields": current_fields(model, edits), "edited_fields": edited_names(edits, self.fields.names),
                        "reviewed": reviewed == APPROVED, "rejected": reviewed == REJECTED})
        return out

    # -- writes --------------------------------------------------------------------------------

    def _state(self, file_id: int) -> StateRow:
        rows = rs.state_rows(self.db, self.key, [file_id])
        if not rows or rows[0].model is None:
            self.item(file_id)  # 404 when there is no such image
            raise ReviewError(409, "only an answered (ok) image can be edited or approved")
        return rows[0]

    def _edits_for(self, model: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """A person's edits: the fields whose value differs from the model's answer."""
        return {name: values.get(name) for name in self.fields.names if values.get(name) != model.get(name)}

    def _write(self, kind: str, op: dict[str, Any], changes: list[Change]) -> int | None:
        if not changes:
            return None
        with self.db:
            rs.begin(self.db)
            op_id = rs.write_changes(self.db, self.key, kind, op, changes)
        return op_id

    def patch(self, file_id: int, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"fields", "reviewed", "rejected"}:
            raise ReviewError(422, 'the body must be {"fields": {...}, "reviewed": true|false}')
        new_fields = body.get("fields") or {}
        if not isinstance(new_fields, dict):
            raise ReviewError(422, "fields must be an object of field names to values")
        for flag in ("reviewed", "rejected"):
            if flag in body and not isinstance(body[flag], bool):
                raise ReviewError(422, f"{flag} must be true or false")
        with self.db:
            rs.begin(self.db)  # read and write in one transaction: a concurrent edit cannot slip between
            state = self._state(file_id)
            assert state.model is not None
            cur = current_fields(state.model, state.edits) or {}
            checked, reason = self.fields.check_object({**cur, **new_fields})
            if reason is not None:
                raise ReviewError(422, reason)
            assert checked is not None
            edits = self._edits_for(state.model, checked)
            reviewed = state.reviewed
            if "reviewed" in body:
                reviewed = APPROVED if body["reviewed"] else (NOT_REVIEWED if reviewed == APPROVED else reviewed)
            if body.get("rejected") is True:
                reviewed = REJECTED
            elif body.get("rejected") is False and reviewed == REJECTED:
                reviewed = NOT_REVIEWED
            undo_id = None
            if (edits, reviewed) != (state.edits, state.reviewed):
                undo_id = rs.write_changes(self.db, self.key, "edit", {"id": file_id, **body},
                                           [Change(file_id, edits, reviewed, state.edits, state.reviewed,
                                                   state.version)])
        return {**self.item(file_id), "undo_id": undo_id}

    def restore(self, file_id: int, version: Any) -> dict[str, Any]:
        versions = self._versions(file_id)
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < len(versions):
            raise ReviewError(422, f"version must be a number from 0 to {len(versions) - 1}")
        target = versions[version]["fields"] or {}
        with self.db:
            rs.begin(self.db)
            state = self._state(file_id)
            assert state.model is not None
            edits = self._edits_for(state.model, target)
            undo_id = None
            if edits != state.edits:
                undo_id = rs.write_changes(self.db, self.key, "restore", {"id": file_id, "version": version},
                                           [Change(file_id, edits, state.reviewed, state.edits, state.reviewed,
                                                   state.version)])
        return {**self.item(file_id), "undo_id": undo_id}

    def selection(self, body: dict[str, Any]) -> list[int]:
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise ReviewError(422, "ids must be a list of image ids")
            return sorted(set(ids))
        flt = body.get("filter")
        if not isinstance(flt, dict):
            raise ReviewError(422, 'a bulk operation needs "ids": [...] or "filter": {...} ({} is every image)')
        try:
            where = where_clause(flt, self.fields.list_names, self.key)
        except FilterError as exc:
            raise ReviewError(422, str(exc)) from None
        return [r[0] for r in self.db.execute(f"{LIST_SCAN}SELECT f.id {FROM_SQL} WHERE {where.sql}",
                                              [*key_params(self.key), *where.params])]

    def _changes(self, op: Op, rows: list[StateRow]) -> tuple[list[Change], int, str | None]:
        changes: list[Change] = []
        refused = 0
        reason: str | None = None
        for row in rows:
            if row.model is None:
                continue
            if op.name == "approve":
                if row.reviewed != APPROVED:
                    changes.append(Change(row.file_id, row.edits, APPROVED, row.edits, row.reviewed, row.version))
                continue
            assert op.field is not None
            before = row.edits[op.field] if op.field in row.edits else row.model.get(op.field)
            after = op.apply(before)
            if after == before:
                continue
            why = self.fields.check_value(op.field, after)
            if why is not None:
                refused += 1
                reason = reason or why
                continue
            edits = dict(row.edits)
            if after == row.model.get(op.field):
                edits.pop(op.field, None)
            else:
                edits[op.field] = after
            changes.append(Change(row.file_id, edits, row.reviewed, row.edits, row.reviewed, row.version))
        return changes, refused, reason

    def bulk(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ReviewError(422, "the body must be a JSON object")
        try:
            op = parse_op(body, self.fields.names, self.fields.list_names)
        except OpError as exc:
            raise ReviewError(422, str(exc)) from None
        dry_run = body.get("dry_run") is True
        record = {k: v for k, v in body.items() if k not in ("ids", "dry_run")}
        changed = refused = 0
        reason: str | None = None
        with self.db:
            rs.begin(self.db)  # the selection, the new values and their versions are one consistent step
            ids = self.selection(body)
            op_id = None if dry_run else rs.start_op(self.db, self.key, "bulk", record)
            for start in range(0, len(ids), BULK_CHUNK):  # chunks: flat memory on 100,000 images
                changes, chunk_refused, chunk_reason = self._changes(
                    op, rs.state_rows(self.db, self.key, ids[start:start + BULK_CHUNK]))
                changed += len(changes)
                refused += chunk_refused
                reason = reason or chunk_reason
                if op_id is not None:
                    rs.write_versions(self.db, self.key, op_id, changes)
            if op_id is not None:
                rs.finish_op(self.db, op_id, changed)
            if not changed and op_id is not None:
                self.db.execute("DELETE FROM review_ops WHERE id = ?", (op_id,))  # nothing to undo
                op_id = None
        return {"changed": changed, "undo_id": op_id, "refused": refused, "reason": reason, "dry_run": dry_run}

    def undo(self, body: Any) -> dict[str, Any]:
        op_id = body.get("undo_id") if isinstance(body, dict) else None
        if not isinstance(op_id, int) or isinstance(op_id, bool):
            raise ReviewError(422, 'the body must be {"undo_id": N}')
        with self.db:
            rs.begin(self.db)
            record = rs.op_record(self.db, op_id)
            if record is None or (record["preset_version"], record["provider"], record["model"]) != (
                    self.key.preset_version, self.key.provider, self.key.model):
                raise ReviewError(404, f"no operation {op_id} to undo")
            if record["undone_at"]:
                raise ReviewError(409, f"operation {op_id} was already undone")
            new_id = rs.start_op(self.db, self.key, "undo", {"undo_of": op_id})
            changed = 0
            for chunk in rs.op_versions(self.db, op_id, BULK_CHUNK):
                changes = [c for c in (_reverted(v) for v in chunk) if c is not None]
                # Written after the chunk was read: the next chunk's keyset query reads only older versions.
                rs.write_versions(self.db, self.key, new_id, changes)
                changed += len(changes)
            rs.finish_op(self.db, new_id, changed)
            rs.mark_undone(self.db, op_id)
        return {"changed": changed, "undo_id": new_id}

    def queue_retry(self, file_id: int) -> dict[str, Any]:
        self.item(file_id)
        with self.db:
            rs.begin(self.db)
            rs.queue_retry(self.db, self.key, file_id)
        return self.item(file_id)


def _reverted(v: rs.OpVersion) -> Change | None:
    """The state that takes back what one operation did to one image. Changes made after it stay: only a field
    still holding the operation's value goes back."""
    if v.now_version == v.version:  # untouched since: its state before, copied back as stored
        return Change(v.file_id, {}, v.before_reviewed, {}, v.now_reviewed, v.now_version,
                      edits_text=v.before_text, before_text=v.now_text)
    wrote, before, now = v.edits, v.before_edits, v.now_edits
    edits = dict(now)
    for name in set(wrote) | set(before):
        if wrote.get(name) == before.get(name) or now.get(name) != wrote.get(name):
            continue  # not changed by the operation, or changed again since
        if name in before:
            edits[name] = before[name]
        else:
            edits.pop(name, None)
    changed_review = v.reviewed != v.before_reviewed and v.now_reviewed == v.reviewed
    reviewed = v.before_reviewed if changed_review else v.now_reviewed
    if (edits, reviewed) == (now, v.now_reviewed):
        return None
    return Change(v.file_id, edits, reviewed, now, v.now_reviewed, v.now_version)
