"""Review edits live beside the model's answer: current values reach every export, reruns and retries never
overwrite them, bulk operations undo as one step, status counts them, export --reviewed-only."""

from __future__ import annotations

import csv
import json

import openpyxl
import pyarrow.parquet as pq
import pytest

from imagegen import read_jsonl, run_cli
from imgtag.review.service import ReviewError
from reviewfix import answer, open_review, tagged_folder


def _ids(review) -> dict[str, int]:
    return {item["path"]: item["id"] for item in review.list({"limit": 100})["items"]}


def test_edits_reach_every_export_and_survive_a_rerun(tmp_path, fake_anthropic_factory, monkeypatch):
    images, out, args = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=4)
    store, review = open_review(out)
    ids = _ids(review)
    first = ids["img_0000.jpg"]
    model_before = store.db.execute("SELECT fields FROM jobs ORDER BY id").fetchall()
    review.patch(first, {"fields": {"category": "裙子", "tags": ["dress", "T恤"]}, "reviewed": True})
    store.close()

    formats = "csv,jsonl,xlsx,parquet,metadata-jsonl,txt,json-sidecar,html,xmp"
    code, output = run_cli(["export", "--out", str(out), "--format", formats], {}, monkeypatch)
    assert code == 0, output
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    edited = rows["img_0000.jpg"]
    assert edited["fields"]["category"] == "裙子" and edited["fields"]["tags"] == ["dress", "T恤"]
    assert edited["reviewed"] is True and edited["edited_fields"] == ["tags", "category"]
    assert rows["img_0001.jpg"]["reviewed"] is False and rows["img_0001.jpg"]["edited_fields"] == []
    with (out / "results.csv").open(encoding="utf-8-sig", newline="") as f:
        csv_rows = {r["path"]: r for r in csv.DictReader(f)}
    assert csv_rows["img_0000.jpg"]["category"] == "裙子" and csv_rows["img_0000.jpg"]["reviewed"] == "true"
    assert csv_rows["img_0000.jpg"]["edited_fields"] == "tags|category"
    sheet = [r for r in openpyxl.load_workbook(out / "results.xlsx")["results"].iter_rows(values_only=True)]
    assert any("裙子" in r for r in sheet)
    assert "裙子" in pq.read_table(out / "results.parquet").column("category").to_pylist()
    meta = {r["file_name"]: r for r in read_jsonl(images / "metadata.jsonl")}
    assert meta["img_0000.jpg"]["category"] == "裙子"
    assert (images / "img_0000.txt").read_text(encoding="utf-8").startswith("dress")
    sidecar = json.loads((images / "img_0000.jpg.imgtag.json").read_text(encoding="utf-8"))
    assert sidecar["fields"]["category"] == "裙子"
    assert "裙子" in (out / "contact-sheet.html").read_text(encoding="utf-8")
    xmp = (images / "img_0000.jpg.xmp").read_text(encoding="utf-8")
    assert "T恤" in xmp and "t-shirt" not in xmp

    # The model's answer is never changed by a person; a rerun answering differently keeps the edit current.
    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(answer(99), ensure_ascii=False)})
    code, output = run_cli([*args, "--format", "csv,jsonl,xmp"], fake.env(), monkeypatch)
    assert code == 0, output
    store, review = open_review(out)
    assert store.db.execute("SELECT fields FROM jobs ORDER BY id").fetchall() == model_before
    store.close()
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows["img_0000.jpg"]["fields"]["category"] == "裙子"
    assert "T恤" in (images / "img_0000.jpg.xmp").read_text(encoding="utf-8")


def test_status_counts_and_reviewed_only_export(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=4)
    store, review = open_review(out)
    ids = sorted(_ids(review).values())
    review.patch(ids[0], {"reviewed": True})
    review.patch(ids[1], {"fields": {"color": "blue"}, "reviewed": True})
    review.patch(ids[2], {"fields": {"style": "formal"}})
    store.close()
    code, output = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0 and "review: 2 reviewed, 2 edited, 2 not yet reviewed" in output, output
    code, output = run_cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    assert json.loads(output)["review"] == {"reviewed": 2, "rejected": 0, "edited": 2, "not_reviewed": 2}
    code, output = run_cli(["export", "--out", str(out), "--reviewed-only", "--format", "jsonl"], {}, monkeypatch)
    assert code == 0, output
    rows = read_jsonl(out / "results.jsonl")
    assert [r["path"] for r in rows] == ["img_0000.jpg", "img_0001.jpg"] and all(r["reviewed"] for r in rows)


def test_bulk_rename_over_a_filter_undoes_as_one_step(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=6)
    store, review = open_review(out)
    cotton = review.list({"tag": "cotton"})["total"]
    assert 0 < cotton < 6
    op = {"op": "rename_tag", "field": "tags", "from": "t-shirt", "to": "T恤", "filter": {"tag": "cotton"}}
    assert review.bulk({**op, "dry_run": True}) == {"changed": cotton, "undo_id": None, "refused": 0,
                                                   "reason": None, "dry_run": True}
    assert review.list({"tag": "T恤"})["total"] == 0  # a dry run changes nothing
    done = review.bulk(op)
    assert done["changed"] == cotton and review.list({"tag": "T恤"})["total"] == cotton
    assert {"tag": "T恤", "count": cotton, "field": "tags"} in review.tags()
    # An edit made after the bulk operation survives its undo.
    later = review.list({"tag": "T恤"})["items"][0]["id"]
    review.patch(later, {"fields": {"color": "green"}})
    assert review.undo({"undo_id": done["undo_id"]})["changed"] == cotton
    assert review.list({"tag": "T恤"})["total"] == 0 and review.list({"tag": "t-shirt"})["total"] == 6
    assert review.item(later)["fields"]["color"] == "green" and review.item(later)["edited_fields"] == ["color"]
    with pytest.raises(ReviewError) as again:
        review.undo({"undo_id": done["undo_id"]})
    assert again.value.status == 409
    history = review.history(later)["versions"]
    assert [v["kind"] for v in history] == ["model", "bulk", "edit", "undo"]
    assert history[0]["fields"]["tags"][0] == "t-shirt" and history[1]["fields"]["tags"][0] == "T恤"
    restored = review.restore(later, 1)
    assert restored["fields"]["tags"][0] == "T恤" and restored["fields"]["color"] == "red"
    store.close()


def test_invalid_values_are_refused_with_the_reason_and_never_stored(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=2)
    store, review = open_review(out)
    first = min(_ids(review).values())
    for fields, words in (({"description": "x" * 60}, "longer than 50 characters"),
                          ({"tags": []}, "at least 1 item"),
                          ({"tags": ["a", "b", "c", "d", "e", "f"]}, "at most 5"),
                          ({"nope": 1}, "no field named 'nope'")):
        with pytest.raises(ReviewError) as refused:
            review.patch(first, {"fields": fields})
        assert refused.value.status == 422 and words in str(refused.value), str(refused.value)
    room = 5 - len(review.item(first)["fields"]["tags"])
    for n in range(room):
        assert review.bulk({"op": "add_tag", "field": "tags", "tag": f"y{n}", "ids": [first]})["changed"] == 1
    refused = review.bulk({"op": "add_tag", "field": "tags", "tag": "z", "ids": [first]})
    assert refused["changed"] == 0 and refused["refused"] == 1 and "at most 5" in refused["reason"]
    assert store.db.execute("SELECT COUNT(*) FROM review_versions").fetchone()[0] == room
    store.close()


def test_filters_near_duplicates_edited_and_sort(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=4)
    store, review = open_review(out)
    ids = sorted(_ids(review).values())
    store.db.execute("UPDATE files SET near_duplicate_of = NULL")  # plain colour fills all look alike
    store.db.execute("UPDATE files SET near_duplicate_of = ? WHERE id = ?", (ids[0], ids[2]))
    near = review.list({"near_duplicates": "true"})
    assert sorted(i["id"] for i in near["items"]) == [ids[0], ids[2]] and near["total"] == 2
    review.patch(ids[3], {"fields": {"color": "green"}})
    assert [i["id"] for i in review.list({"edited": "true"})["items"]] == [ids[3]]
    assert review.list({"edited": "false"})["total"] == 3
    assert review.list({"sort": "updated"})["items"][0]["id"] == ids[3]
    assert [i["id"] for i in review.list({"sort": "-id"})["items"]] == ids[::-1]
    assert review.list({"q": "GREEN"})["total"] == 1  # current values, any case
    with pytest.raises(ReviewError) as bad:
        review.list({"nope": "1"})
    assert bad.value.status == 400 and "unknown filter 'nope'" in str(bad.value)
    store.close()
