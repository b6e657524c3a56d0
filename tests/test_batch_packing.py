"""--images-per-request K in batch mode: a batch request carries K labelled images; each answer lands on its own
image, and a refused pack touches only its own images (each goes alone next). Crash safety with packs:
tests/test_batch.py::test_crash_after_create_before_commit_is_adopted."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.request.batch.common import BatchStats
from imgtag.store import Store
from imgtag.store import batches as sb
from imgtag.store.migrations import MIGRATIONS, _v9_batch_packs
from pricetable import batch_cost

BATCH = ["--mode", "batch", "--poll-interval", "0.05", "-q"]
FIELDS = {"tags", "category", "description", "color", "style"}


def query(out: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(out / "imgtag.db") as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def recording(recording_anthropic: Any) -> Any:
    """A fake whose `seen` lists every batch item it answered (image keys, custom_id, params)."""
    return lambda **fields: recording_anthropic(batch_processing_s=0.05, **fields)


def own_colours(out: Path, made: dict[str, tuple[int, int, int]]) -> dict[str, dict[str, Any]]:
    rows = {Path(r["path"]).name: r for r in read_jsonl(out / "results.jsonl")}
    for name, r in rows.items():
        if r["status"] == "ok":  # identity: the colour the answer names is this file's own colour
            assert set(r["fields"]) == FIELDS and close_to(r["fields"]["color"], made[name]), r
    return rows


def test_batch_packs_land_each_answer_on_its_own_image(tmp_path: Path, recording: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 11)
    fake = recording()
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-sonnet-4-6",
                            "--images-per-request", "4", *BATCH], fake.env(), monkeypatch)
    assert code == 0, output
    rows = own_colours(out, made)
    assert len(rows) == 11 and {r["status"] for r in rows.values()} == {"ok"}
    assert sorted(len(e["image_keys"]) for e in fake.seen) == [3, 4, 4]  # 3 batch requests, not 11
    texts = [b["text"] for b in fake.seen[0]["request"]["messages"][0]["content"] if b["type"] == "text"]
    assert texts[:2] == ["Image 1:", "Image 2:"]
    # Every pack shares one system prompt and schema, so one cached prefix serves the whole batch.
    assert len({json.dumps([e["request"]["system"], e["request"]["output_config"]]) for e in fake.seen}) == 1
    # One item per image; the API saw one custom_id per pack (its first image's item id).
    items = query(out, "SELECT custom_id, request_cid, position, state FROM batch_items ORDER BY request_cid, position")
    assert len(items) == 11 and {s for *_, s in items} == {"ok"}
    assert sorted({rc for _, rc, _, _ in items}) == sorted(e["custom_id"] for e in fake.seen)
    assert query(out, "SELECT SUM(item_count) FROM batches") == [(3,)]  # requests, as the API counts them
    assert "11 files: ok 11; 3 requests," in output  # the summary counts requests, not images
    # The pack's usage is split across its images: the recorded usage adds up to what the fake billed, at
    # batch prices.
    assert sum(r["usage"]["input_tokens"] for r in rows.values()) == fake.stats.input_tokens
    assert sum(r["usage"]["output_tokens"] for r in rows.values()) == fake.stats.output_tokens
    s = fake.stats
    billed = batch_cost("claude-sonnet-4-6", input_tokens=s.input_tokens, output_tokens=s.output_tokens,
                        cache_read=s.cache_read_input_tokens,
                        cache_write_5m=s.cache_creation_input_tokens - s.cache_creation_1h_input_tokens,
                        cache_write_1h=s.cache_creation_1h_input_tokens)
    assert sum(r["cost_usd"] for r in rows.values()) == pytest.approx(billed, rel=1e-3)


def test_a_refused_pack_sends_its_images_alone_so_only_the_bad_one_fails(tmp_path: Path, recording: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 8)
    bad = "img_0005.jpg"

    def reject_bad(ctx: dict[str, Any]) -> dict[str, Any] | None:
        # The API refuses a request holding this image (as it would a broken one): an errored result, unbilled.
        if any(close_to(k, made[bad]) for k in ctx["image_keys"]):
            return {"status": 400, "message": "messages.0.content.3.image.source: Could not process image"}
        return None

    fake = recording(respond=reject_bad)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--images-per-request", "4", *BATCH],
                           fake.env(), monkeypatch)
    assert code == 1, output
    rows = own_colours(out, made)
    assert [n for n, r in rows.items() if r["status"] != "ok"] == [bad]
    assert rows[bad]["error"]["type"] == "invalid_request_error"
    sizes = [len(e["image_keys"]) for e in fake.seen]
    assert sizes[:2] == [4, 4] and sorted(sizes[2:]) == [1, 1, 1, 1]  # the refused pack went again one by one
    states = dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
    assert states == {"ok": 7, "split": 4, "failed": 1}


def test_a_truncated_pack_is_asked_again_with_more_room(tmp_path: Path, recording: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    asked: list[int] = []

    def truncate_first_packs(ctx: dict[str, Any]) -> dict[str, Any] | None:
        asked.append(ctx["request"]["max_tokens"])
        return {"output_mode": "truncated"} if len(asked) <= 2 else None

    fake = recording(respond=truncate_first_packs)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--images-per-request", "3", *BATCH],
                           fake.env(), monkeypatch)
    assert code == 0, output
    rows = own_colours(out, made)
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert asked[2] == pytest.approx(2 * asked[0], abs=3)  # the second ask of a pack has twice the room


def test_migration_gives_old_batch_items_their_own_request_id(tmp_path: Path) -> None:
    """A store from before packs: each item was its own request."""
    before_packs = MIGRATIONS.index(_v9_batch_packs)
    with sqlite3.connect(tmp_path / "imgtag.db") as db:  # the schema as it was, then the store's own upgrade
        for step in MIGRATIONS[:before_packs]:
            step(db)
        db.execute(f"PRAGMA user_version = {before_packs}")
        db.execute("INSERT INTO batch_submissions(created_at, item_count) VALUES ('2026-01-01T00:00:00+00:00', 1)")
        db.execute("INSERT INTO jobs(id, sha256, preset_version, provider, model, status, updated_at)"
                   " VALUES (7, 'x', 'p', 'anthropic', 'm', 'batched', 't')")
        db.execute("INSERT INTO batch_items(custom_id, batch_id, job_id, state, created_at)"
                   " VALUES ('j7-1', NULL, 7, 'submitting', 't')")
    with Store(tmp_path, create=False) as store:
        assert [tuple(r) for r in sb.request_items(store, "j7-1")] == [("j7-1", None, 7, "submitting", 0)]


def test_progress_counts_images_on_the_server_not_requests() -> None:
    stats = BatchStats()
    stats.live = {"b1": ("in_progress", {"processing": 3}), "b2": ("in_progress", {"processing": 2})}
    stats.images_per_request = {"b1": 4.0}  # b1 carries packs of 4; b2 one image per request
    assert stats.in_batches == 14
