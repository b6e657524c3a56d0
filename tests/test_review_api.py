"""Review from Python: `imgtag.open_review` edits, approves, bulk-changes and undoes as the page does, and what it
stores is what the results, the exports and a rerun see (the folder was tagged through the real CLI, engine and
SDK against the fake Anthropic server)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

import imgtag
from imagegen import run_cli
from imgtag.store import Store
from reviewfix import tagged_folder


def _results(out: Path) -> dict[str, imgtag.Result]:
    return {row.path: row for row in imgtag.results(out)}


def test_an_edit_by_path_is_stored_as_a_version_and_reaches_results_exports_and_reruns(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    images, out, args = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=3)
    first, second, _ = sorted(_results(out))
    with imgtag.open_review(out) as review:
        assert isinstance(review, imgtag.ReviewSession)
        assert (review.preset, review.provider) == ("ecommerce", "anthropic") and "tags" in review.fields
        before = review.get(first)
        edited = review.edit(first, {"description": "navy linen shirt"}, reviewed=True)
        assert isinstance(edited, imgtag.ReviewItem) and edited.id == before.id
        assert edited.fields is not None and edited.fields["description"] == "navy linen shirt"
        assert (edited.reviewed, edited.edited_fields) == (True, ("description",))
        # the original's absolute path and the numeric id name the same image
        assert review.get(str(images / first)).id == review.get(edited.id).id == edited.id
        history = review.history(first)
        assert [v.kind for v in history] == ["model", "edit"]
        assert history[0].fields is not None and history[0].fields["description"] == before.fields["description"]
        page = review.images({"edited": True})
        assert (page.total, [i.path for i in page.items]) == (1, [first])

    rows = _results(out)
    assert rows[first].fields is not None and rows[first].fields["description"] == "navy linen shirt"
    assert (rows[first].reviewed, rows[first].edited_fields) == (True, ("description",))
    assert (rows[second].reviewed, rows[second].edited_fields) == (False, ())

    fake = fake_anthropic_factory()
    code, output = run_cli(args, fake.env(), monkeypatch)  # a rerun asks nothing and keeps the edit
    assert (code, fake.stats.messages_requests) == (0, 0), output
    imgtag.export_files(out, formats="csv")
    with open(out / "results.csv", encoding="utf-8-sig", newline="") as handle:
        by_path = {row["path"]: row for row in csv.DictReader(handle)}
    assert by_path[first]["description"] == "navy linen shirt" and by_path[first]["reviewed"] in ("true", "True")
    assert by_path[second]["description"] != "navy linen shirt"


def test_a_refused_value_raises_with_the_reason_and_stores_nothing(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=2)
    first = sorted(_results(out))[0]
    with imgtag.open_review(out) as review:
        with pytest.raises(imgtag.ReviewRefused, match="longer than 50 characters") as refused:
            review.edit(first, {"description": "x" * 60})
        assert refused.value.status == 422 and isinstance(refused.value, imgtag.UsageError)
        with pytest.raises(imgtag.ReviewRefused, match=r"no image 'nope\.jpg'") as missing:
            review.get("nope.jpg")
        assert missing.value.status == 404
        with pytest.raises(imgtag.ReviewRefused, match="unknown filter 'colour'"):
            review.approve(where={"colour": "red"})
        with pytest.raises(imgtag.ReviewRefused, match=r"images=\[\.\.\.\] or where="):
            review.approve()  # every image must be asked for: where={}
        assert [v.kind for v in review.history(first)] == ["model"]
    store = Store(out, lock=False, create=False)
    try:
        assert store.db.execute("SELECT COUNT(*) FROM review_versions").fetchone()[0] == 0
    finally:
        store.close()


def test_bulk_operations_count_first_apply_as_one_step_and_undo(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=6)
    with imgtag.open_review(out) as review:
        counts = {t.tag: t.count for t in review.tags("tags")}
        assert counts["t-shirt"] == 6 and counts["cotton"] == 3
        plan = review.rename_tag("tags", "t-shirt", "T恤", where={"tag": "cotton"}, dry_run=True)
        assert (plan.changed, plan.undo_id, plan.dry_run) == (3, None, True)
        assert {t.tag: t.count for t in review.tags("tags")}["t-shirt"] == 6  # a dry run changes nothing
        done = review.rename_tag("tags", "t-shirt", "T恤", where={"tag": "cotton"})
        assert done.changed == 3 and done.undo_id is not None
        assert {t.tag: t.count for t in review.tags("tags")}["T恤"] == 3
        approved = review.approve([item.path for item in review.images({"tag": "T恤"}).items])
        assert approved.changed == 3
        assert review.images({"reviewed": True}).total == 3
        undone = review.undo(done.undo_id)
        assert undone.changed == 3
        assert {t.tag: t.count for t in review.tags("tags")}.get("T恤") is None
        with pytest.raises(imgtag.ReviewRefused, match="already undone") as again:
            review.undo(done.undo_id)
        assert again.value.status == 409
        assert review.images({"reviewed": True}).total == 3  # the approvals were another step: they stay
        assert len(list(review.each())) == 6

    approved_only = imgtag.export_files(out, formats="jsonl", reviewed_only=True)
    assert approved_only.written
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def test_a_review_session_opens_beside_a_run_that_holds_the_folder(
        tmp_path: Path, fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=2)
    writer = Store(out, lock=True, create=False)  # as `imgtag run` holds it while it tags
    try:
        with imgtag.open_review(out) as review:
            first = review.images().items[0]
            assert review.edit(first.id, reviewed=True).reviewed
    finally:
        writer.close()
    with pytest.raises(imgtag.UsageError, match=r"no results yet|no imgtag store|does not exist"):
        imgtag.open_review(tmp_path / "empty")
