"""`imgtag status`: failures left out are counted, JSON nests objects, money has the digits it needs (items 10, 13)."""

from __future__ import annotations

import json

from imagegen import run_cli
from imgtag.export.targets import record
from imgtag.pricing.costs import Usage
from imgtag.store import FileRecord, Store, WorkKey
from imgtag.util.money import usd

KEY = WorkKey("v1", "anthropic", "claude-haiku-4-5")
META = {"preset": "ecommerce", "preset_name": "ecommerce", "preset_version": "v1", "provider": "anthropic",
        "model": "claude-haiku-4-5", "mode": "sync", "formats": "csv,jsonl", "fields": ["tags"], "lang": None,
        "categories": None, "list_fields": ["tags"]}


def _store_with_failures(tmp_path, n: int) -> None:
    with Store(tmp_path) as store:
        record(store, META)
        run = store.start_run("run", key=KEY)
        for i in range(n):
            store.upsert_file(FileRecord(path=str(tmp_path / f"bad{i}.jpg"), display=f"bad{i}.jpg", root=None,
                                         size=1, mtime_ns=1, status="failed", reason_code="corrupt",
                                         reason="corrupt: bad header"), run)
        fid = store.upsert_file(FileRecord(path=str(tmp_path / "ok.jpg"), display="ok.jpg", root=None, size=1,
                                           mtime_ns=1, status="ok", sha256="s"), run)
        job = store.job_for("s", KEY, fid)
        store.record_attempt(job.id, run, started_at="t", outcome="ok", mode="sync", usage=Usage(300, 80),
                             cost=0.0007, commit_job={"status": "ok", "mode": "sync", "fields": {"tags": ["a"]}})
        store.db.execute("INSERT INTO batches(id, provider, model, created_at, processing_status, request_counts,"
                         " item_count, bytes) VALUES ('msgbatch_1', 'anthropic', 'claude-haiku-4-5', 't',"
                         " 'in_progress', '{\"processing\": 4, \"succeeded\": 1}', 5, 100)")


def test_status_counts_the_failures_it_leaves_out(tmp_path, monkeypatch):
    _store_with_failures(tmp_path, 53)
    code, output = run_cli(["status", "--out", str(tmp_path)], {}, monkeypatch)
    assert code == 0, output
    assert output.count("failed bad") == 50
    assert "... and 3 more" in output
    assert "spent to date $0.0007" in output  # not $0.00
    code, output = run_cli(["status", "--out", str(tmp_path), "--json"], {}, monkeypatch)
    data = json.loads(output)
    assert data["failures_total"] == 53 and len(data["failures"]) == 50
    assert data["batches"][0]["request_counts"] == {"processing": 4, "succeeded": 1}
    assert isinstance(data["target"], dict)


def test_status_lists_everything_when_nothing_is_left_out(tmp_path, monkeypatch):
    _store_with_failures(tmp_path, 2)
    code, output = run_cli(["status", "--out", str(tmp_path)], {}, monkeypatch)
    assert code == 0, output
    assert output.count("failed bad") == 2 and "more" not in output


def test_money_has_the_precision_it_needs():
    assert usd(0.0007) == "$0.0007"
    assert usd(0.000712) == "$0.000712"  # three significant digits below a dollar
    assert usd(0.5) == "$0.50"
    assert usd(12.345) == "$12.35"
    assert usd(0) == "$0.00"
    assert usd(None) == "unknown"


def test_status_refreshes_live_batches_when_a_key_is_set(tmp_path, fake_anthropic_factory, monkeypatch):
    import time

    from imagegen import make_images

    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_processing_s=0.3)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--detach", "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    time.sleep(0.8)
    code, output = run_cli(["status", "--out", str(out), "--json"], {}, monkeypatch)  # no key: as stored
    (batch,) = json.loads(output)["batches"]
    assert batch["processing_status"] == "in_progress" and batch["live"] is False
    code, output = run_cli(["status", "--out", str(out), "--json"], fake.env(), monkeypatch)
    (batch,) = json.loads(output)["batches"]
    assert batch["processing_status"] == "ended" and batch["live"] is True
    assert batch["request_counts"]["succeeded"] == 3
    code, text = run_cli(["status", "--out", str(out)], fake.env(), monkeypatch)
    assert "ended, 3 requests (succeeded 3; live)" in text and "imgtag run" in text


def test_requests_count_what_was_sent_not_batch_items_never_processed(tmp_path):
    """A packed batch canceled (or expired) and sent again: status counts the requests that were processed, as
    the run's summary does, not every image's unprocessed batch item (the tryout saw 103 against 21)."""
    from imgtag.app.summary import summarize

    with Store(tmp_path) as store:
        run = store.start_run("run", key=KEY)
        jobs = []
        for i in range(8):
            fid = store.upsert_file(FileRecord(path=str(tmp_path / f"{i}.jpg"), display=f"{i}.jpg", root=None,
                                               size=1, mtime_ns=1, status="ok", sha256=f"s{i}"), run)
            jobs.append(store.job_for(f"s{i}", KEY, fid).id)
        for job in jobs:  # canceled in the first batch: not processed, no answer, not billed
            store.record_attempt(job, run, started_at="t", outcome="retry", mode="batch", error_type="canceled",
                                 batch_id="msgbatch_1")
        for i, job in enumerate(jobs):  # packs of 4 in the next batch: two answers, each shared by 4 images
            store.record_attempt(job, run, started_at="t", outcome="ok", mode="batch", request_id=f"msg_{i // 4}",
                                 usage=Usage(100, 20), cost=0.001, batch_id="msgbatch_2")
        # A sync request that failed without an answer (a dropped connection) was still sent.
        store.record_attempt(jobs[0], run, started_at="t", outcome="retry", mode="sync",
                             error_type="connection_error")
        assert summarize(store.db, KEY).requests == 3
