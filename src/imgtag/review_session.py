"""Review from Python (docs/python-api.md "Review and correct"): what `imgtag review`'s page does, as typed calls.

    with imgtag.open_review("imgtag-out") as review:
        review.edit("shirts/blue.jpg", {"category": "上衣"}, reviewed=True)
        change = review.rename_tag("tags", "t-shirt", "T恤", where={})   # every image; one undo step
        review.undo(change.undo_id)

The same service (review/service.py) answers the page's JSON API, so an edit made here is stored exactly as one
made on the page: a version beside the model's answer, never overwriting it, kept by reruns and written by every
export. The CLI's `imgtag review` opens its target through `open_review` and serves the session's service.

Images are named by the `path` of their result row (imgtag.results), by their original's absolute path, or by
the numeric id the page and the JSON API use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from imgtag.config.errors import UsageError

if TYPE_CHECKING:
    from imgtag.review.service import Review

ImageRef = str | int | os.PathLike[str]
"""An image: its result row's `path`, its original's path, or its numeric id."""

__all__ = ["ImageRef", "ReviewChange", "ReviewItem", "ReviewPage", "ReviewRefused", "ReviewSession", "ReviewVersion",
           "TagCount"]


class ReviewRefused(UsageError):
    """An edit or a selection the review refuses, with the reason in one sentence: a value the field's schema does
    not allow, an image that is not in the folder or has no answer to edit, an unknown filter, an undo of an
    operation already undone. `status` is the HTTP status the JSON API answers the same request with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReviewItem:
    """One image as the review sees it: current values (the model's answer with a person's edits over it)."""

    id: int
    path: str
    status: str
    """ok, failed, skipped or pending."""
    fields: Mapping[str, Any] | None
    """Current values (None unless ok)."""
    reviewed: bool
    """Approved by a person."""
    rejected: bool
    edited_fields: tuple[str, ...]
    error: Mapping[str, Any] | None
    queued_for_retry: bool
    """Marked "retry this image": the next `imgtag retry` asks it again."""
    duplicate_of: int | None
    near_duplicate_of: int | None


@dataclass(frozen=True)
class ReviewPage:
    """One page of a filtered list."""

    total: int
    """Images matching the filter, on every page."""
    items: tuple[ReviewItem, ...]


@dataclass(frozen=True)
class ReviewChange:
    """What an edit over a selection did (or, with dry_run, would do)."""

    changed: int
    undo_id: int | None
    """Pass to `undo()` to take back the whole operation; None when nothing changed (or a dry run)."""
    refused: int = 0
    """Images the operation would have given a value their field does not allow: left as they were."""
    reason: str | None = None
    """Why the first refused image was refused."""
    dry_run: bool = False


@dataclass(frozen=True)
class ReviewVersion:
    """One step of an image's history: version 0 is the model's answer, then every edit and every later answer."""

    version: int
    kind: str
    """model, edit, bulk, restore or undo."""
    at: str
    """When (UTC, ISO 8601)."""
    fields: Mapping[str, Any] | None
    edited_fields: tuple[str, ...]
    reviewed: bool
    rejected: bool


@dataclass(frozen=True)
class TagCount:
    tag: str
    count: int
    field: str


def _item(data: Mapping[str, Any]) -> ReviewItem:
    return ReviewItem(id=data["id"], path=data["path"], status=data["status"], fields=data["fields"],
                      reviewed=data["reviewed"], rejected=data["rejected"],
                      edited_fields=tuple(data["edited_fields"]), error=data["error"],
                      queued_for_retry=data["queued"], duplicate_of=data["duplicate_of"],
                      near_duplicate_of=data["near_duplicate_of"])


class ReviewSession:
    """One target of one output folder, open for review. Use it in a `with` block (or call `close()`): it holds a
    connection to the folder's store, never its lock, so `imgtag run` can tag the same folder meanwhile.

    Bulk operations take the images to change as `images` (references) or as `where`, a filter with the keys of
    the page's list (status, q, tag, reviewed, rejected, edited, near_duplicates, queued; `{}` is every image);
    `dry_run=True` counts the images an operation would change without changing any."""

    def __init__(self, out: Path, meta: Mapping[str, Any], service: Review) -> None:
        self.out = out
        self.preset: str = meta["preset_name"]
        self.preset_version: str = meta["preset_version"]
        self.provider: str = meta["provider"]
        self.model: str = meta["model"]
        self.lang: str | None = meta.get("lang")
        self.fields: tuple[str, ...] = tuple(meta["fields"])
        self.service = service
        """What the page's JSON API calls (review/service.py): `imgtag review` serves this session's."""

    # -- the session itself --------------------------------------------------------------------------------

    def close(self) -> None:
        self.service.db.close()

    def __enter__(self) -> ReviewSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ReviewSession {self.out} {self.preset} {self.provider}/{self.model}>"

    def _call(self, work: Any, *args: Any) -> Any:
        from imgtag.review.service import ReviewError

        try:
            return self.service.locked(lambda: work(*args))
        except ReviewError as exc:
            raise ReviewRefused(str(exc), exc.status) from None

    # -- reads ----------------------------------------------------------------------------------------------

    def id_of(self, image: ImageRef) -> int:
        """The numeric id of an image named by its result `path`, its original's path or its id."""
        if isinstance(image, bool):
            raise ReviewRefused(f"not an image: {image!r}", 404)
        if isinstance(image, int):
            return image
        text = os.fspath(image)
        rows = self.service.db.execute("SELECT id FROM files WHERE display = ? ORDER BY id LIMIT 2",
                                       (text,)).fetchall()
        if not rows:
            absolute = os.fsencode(os.path.abspath(text))
            rows = self.service.db.execute("SELECT id FROM files WHERE path = ?", (absolute,)).fetchall()
        if len(rows) == 1:
            return int(rows[0][0])
        if rows:
            raise ReviewRefused(f"{text} names more than one image in {self.out}: use its id or its full path", 404)
        raise ReviewRefused(f"no image {text!r} in {self.out}", 404)

    def get(self, image: ImageRef) -> ReviewItem:
        return _item(self._call(self.service.item, self.id_of(image)))

    def images(self, where: Mapping[str, Any] | None = None, *, sort: str = "id", offset: int = 0,
               limit: int = 50) -> ReviewPage:
        """One page of the images matching `where` (every image when None), in `sort` order (id, -id, path,
        -path, updated); at most 500 a page."""
        params = {**(where or {}), "sort": sort, "offset": offset, "limit": limit}
        page = self._call(self.service.list, params)
        return ReviewPage(total=page["total"], items=tuple(_item(i) for i in page["items"]))

    def each(self, where: Mapping[str, Any] | None = None, *, sort: str = "id") -> Iterator[ReviewItem]:
        """Every image matching `where`, a page at a time."""
        offset = 0
        while True:
            page = self.images(where, sort=sort, offset=offset, limit=500)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def history(self, image: ImageRef) -> list[ReviewVersion]:
        versions = self._call(self.service.history, self.id_of(image))["versions"]
        return [ReviewVersion(version=v["version"], kind=v["kind"], at=v["at"], fields=v["fields"],
                              edited_fields=tuple(v["edited_fields"]), reviewed=v["reviewed"],
                              rejected=v["rejected"]) for v in versions]

    def tags(self, field: str | None = None) -> list[TagCount]:
        """The target's tags with how many images carry each (current values), most used first."""
        return [TagCount(t["tag"], t["count"], t["field"]) for t in self._call(self.service.tags, field)]

    # -- one image ----------------------------------------------------------------------------------------------

    def edit(self, image: ImageRef, fields: Mapping[str, Any] | None = None, *, reviewed: bool | None = None,
             rejected: bool | None = None) -> ReviewItem:
        """Set some of an image's fields (the others keep their current values) and/or approve or reject it.
        ReviewRefused, with the reason, for a value the field's schema does not allow: nothing is stored then."""
        body: dict[str, Any] = {"fields": dict(fields or {})}
        if reviewed is not None:
            body["reviewed"] = reviewed
        if rejected is not None:
            body["rejected"] = rejected
        return _item(self._call(self.service.patch, self.id_of(image), body))

    def restore(self, image: ImageRef, version: int) -> ReviewItem:
        """Make an earlier version's values current again (a new version: nothing is lost)."""
        return _item(self._call(self.service.restore, self.id_of(image), version))

    def queue_retry(self, image: ImageRef) -> ReviewItem:
        """Mark the image for the next `imgtag retry` (nothing is asked, nothing paid, until then)."""
        return _item(self._call(self.service.queue_retry, self.id_of(image)))

    # -- many images ----------------------------------------------------------------------------------------

    def _bulk(self, op: dict[str, Any], images: Iterable[ImageRef] | None, where: Mapping[str, Any] | None,
              dry_run: bool) -> ReviewChange:
        if (images is None) == (where is None):
            raise ReviewRefused("name the images to change with images=[...] or where={...} ({} is every image)")
        body = {**op, "dry_run": dry_run}
        if images is not None:
            refs: Sequence[ImageRef] = [images] if isinstance(images, (str, os.PathLike)) else list(images)
            body["ids"] = [self.id_of(ref) for ref in refs]
        else:
            body["filter"] = dict(where or {})
        done = self._call(self.service.bulk, body)
        return ReviewChange(changed=done["changed"], undo_id=done["undo_id"], refused=done["refused"],
                            reason=done["reason"], dry_run=done["dry_run"])

    def approve(self, images: Iterable[ImageRef] | None = None, *, where: Mapping[str, Any] | None = None,
                dry_run: bool = False) -> ReviewChange:
        return self._bulk({"op": "approve"}, images, where, dry_run)

    def add_tag(self, field: str, tag: str, images: Iterable[ImageRef] | None = None, *,
                where: Mapping[str, Any] | None = None, dry_run: bool = False) -> ReviewChange:
        return self._bulk({"op": "add_tag", "field": field, "tag": tag}, images, where, dry_run)

    def remove_tag(self, field: str, tag: str, images: Iterable[ImageRef] | None = None, *,
                   where: Mapping[str, Any] | None = None, dry_run: bool = False) -> ReviewChange:
        return self._bulk({"op": "remove_tag", "field": field, "tag": tag}, images, where, dry_run)

    def rename_tag(self, field: str, old: str, new: str, images: Iterable[ImageRef] | None = None, *,
                   where: Mapping[str, Any] | None = None, dry_run: bool = False) -> ReviewChange:
        """Rename (or, when `new` is already there, merge) a tag."""
        return self._bulk({"op": "rename_tag", "field": field, "from": old, "to": new}, images, where, dry_run)

    def set_field(self, field: str, value: Any, images: Iterable[ImageRef] | None = None, *,
                  where: Mapping[str, Any] | None = None, dry_run: bool = False) -> ReviewChange:
        return self._bulk({"op": "set", "field": field, "value": value}, images, where, dry_run)

    def replace(self, field: str, pattern: str, replacement: str, images: Iterable[ImageRef] | None = None, *,
                regex: bool = False, where: Mapping[str, Any] | None = None, dry_run: bool = False) -> ReviewChange:
        """Find and replace in a text field (or in each tag of a list field); `regex` takes `pattern` as a regular
        expression."""
        op = {"op": "replace", "field": field, "pattern": pattern, "replacement": replacement, "regex": regex}
        return self._bulk(op, images, where, dry_run)

    def undo(self, undo_id: int) -> ReviewChange:
        """Take back one operation (an edit, a bulk operation, a restore): only fields still holding its values go
        back, so later edits stay."""
        done = self._call(self.service.undo, {"undo_id": undo_id})
        return ReviewChange(changed=done["changed"], undo_id=done["undo_id"])
