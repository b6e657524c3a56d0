"""Batch mode (Message Batches) against the fake Anthropic server: chunking, crash safety and re-attach,
errored/expired resubmission, detach, cancel, mixed sync/batch stores, batch prices, flat memory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from batchhelp import assert_all_ok_and_own_colour, query
from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.providers.anthropic_batches import REQUEST_FRAME_BYTES, request_bytes
from imgtag.request.batch import collect as batch_collect
from imgtag.request.batch import submit as batch_submit
from imgtag.request.batch.common import BatchStats
from imgtag.request.batch.submit import ENVELOPE_BYTES, Chunk, Entry, chunked
from imgtag.store import batches as sb
from pricetable import batch_cost

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FAST = ["--mode", "batch", "--poll-interval", "0.05", "-q"]





def items_sent(fake: Any) -> int:
    return sum(fake.stats.batch_items_by_key.values())


# -- chunking ------------------------------------------------------------------------------------------

async def _entries(sizes: list[int]) -> Any:
    for i, size in enumerate(sizes):
        yield Entry([i], {}, size)


def _chunks(sizes: list[int], max_requests: int, max_bytes: int) -> list[Chunk]:
    async def gather() -> list[Chunk]:
        return [c async for c in chunked(_entries(sizes), max_requests, max_bytes)]

    return asyncio.run(gather())


def test_chunks_by_request_count() -> None:
    chunks = _chunks([100] * 25, 10, 10**9)
    assert [len(c.entries) for c in chunks] == [10, 10, 5]
    assert [e.job_ids[0] for c in chunks for e in c.entries] == list(range(25))


def test_chunks_by_bytes_with_exact_accounting() -> None:
    # envelope + 3 * 300 + 2 commas = 917 <= 1000; a 4th would make 1218
    chunks = _chunks([300] * 10, 100, 1000)
    assert [len(c.entries) for c in chunks] == [3, 3, 3, 1]
    assert chunks[0].nbytes == ENVELOPE_BYTES + 3 * 300 + 2
    assert all(c.nbytes <= 1000 for c in chunks)


def test_request_size_is_what_the_sdk_sends() -> None:
    from anthropic._utils._json import openapi_dumps

    params = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "中文 \"quoted\""}]}
    cid = sb.custom_id(123, 45)
    sent = len(openapi_dumps({"custom_id": cid, "params": params}))
    # measured with the custom_id at its 64-character maximum: exact up to that reserve
    assert request_bytes(params) == sent + (64 - len(cid))
    assert len('{"custom_id":"","params":}') == REQUEST_FRAME_BYTES - 64


def test_custom_id_format_and_round_trip() -> None:
    cid = sb.custom_id(987654321, 123456789)
    assert CUSTOM_ID.match(cid)
    assert sb.parse_custom_id(cid) == (987654321, 123456789)
    assert sb.parse_custom_id("msg-1") is None


def test_run_chunks_by_count_and_bytes(tmp_path: Path, fake_anthropic_factory: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 12)
    limit_mb = 0.025  # ~5.3 KB per request here: 4 fit under the byte limit, the count limit is 5
    limit = int(limit_mb * 1024 * 1024)
    # the fake rejects (413) any create body over the limit: the measured chunks must fit the real bodies
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_max_bytes=limit, batch_max_requests=5)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "5",
                            "--batch-max-mb", str(limit_mb)], fake.env(), monkeypatch)
    assert code == 0, output
    batches = query(out, "SELECT item_count, bytes FROM batches ORDER BY created_at")
    assert sum(n for n, _ in batches) == 12
    assert len(batches) >= 3 and all(n <= 5 for n, _ in batches)
    assert all(b <= limit * 0.95 for _, b in batches)
    assert any(n < 5 for n, _ in batches[:-1]), "bytes should bind before the request count here"
    assert 413 not in fake.stats.status_counts
    cids = [r[0] for r in query(out, "SELECT custom_id FROM batch_items")]
    assert len(cids) == 12 and all(CUSTOM_ID.match(c) for c in cids)
    assert set(fake.stats.batch_items_by_custom_id) == set(cids)
    assert set(fake.stats.batch_items_by_custom_id.values()) == {1}


# -- acceptance: kill -9 after the batches are created ------------------------------------------------

def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))} | env
    return subprocess.Popen([sys.executable, "-m", "imgtag", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_acceptance_kill9_after_batches_created_then_rerun(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    images = 64
    made = make_images(tmp_path / "in", images)
    fake = fake_anthropic_factory(batch_processing_s=3.0, p_batch_errored=0.06, p_batch_expired=0.04, seed=5)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--batch-max-requests", "10",
            "--poll-interval", "0.1", "-q"]
    proc = start_cli(args, fake.env())
    deadline = time.monotonic() + 90
    while fake.stats.batches_created < 7:  # 64 images / 10 per batch
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "batches were never created"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert items_sent(fake) == images
    assert not fake.stats.batch_answered_by_key, "killed while every batch was still in flight"

    fake.config.batch_processing_s = 0.2  # batches the rerun creates finish quickly
    rerun = start_cli(args, fake.env())
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert b"Traceback" not in err

    assert_all_ok_and_own_colour(out, made)
    answered = fake.stats.batch_answered_by_key
    assert len(answered) == images and max(answered.values()) == 1, "an image was answered twice"
    assert images < items_sent(fake) <= 1.25 * images, items_sent(fake)  # errored/expired were resubmitted
    states = dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
    assert states["ok"] == images and states.get("errored", 0) + states.get("expired", 0) > 0
    assert not query(out, "SELECT id FROM batches WHERE collected_at IS NULL")
    assert not query(out, "SELECT id FROM batch_submissions WHERE batch_id IS NULL")


# -- crash between the steps of a submission (in-process) ---------------------------------------------

class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs, nothing catches it."""


@pytest.mark.parametrize("pack, images, requests", [(1, 6, 6), (3, 7, 3)])
def test_crash_after_create_before_commit_is_adopted(tmp_path: Path, fake_anthropic_factory: Any,
                                                     monkeypatch: pytest.MonkeyPatch, pack: int, images: int,
                                                     requests: int) -> None:
    made = make_images(tmp_path / "in", images)
    fake = fake_anthropic_factory(batch_processing_s=0.1)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--images-per-request", str(pack), *FAST]

    def crash(*_a: Any, **_k: Any) -> None:
        raise Crash

    monkeypatch.setattr(batch_submit.sb, "attach_batch", crash)
    with pytest.raises(Crash):
        run_cli(args, fake.env(), monkeypatch)
    monkeypatch.undo()
    assert fake.stats.batches_created == 1
    # The submission counts requests (a pack is one), as the API's batch does, so the reconcile recognises it.
    assert query(out, "SELECT item_count FROM batch_submissions WHERE batch_id IS NULL") == [(requests,)]
    assert query(out, "SELECT DISTINCT state FROM batch_items") == [("submitting",)]

    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.batches_created == 1, "the orphan batch was adopted, not created again"
    assert items_sent(fake) == requests
    assert_all_ok_and_own_colour(out, made)


def test_crash_before_create_returns_items_to_pending(tmp_path: Path, fake_anthropic_factory: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    fake = fake_anthropic_factory(batch_processing_s=0.1)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST]
    begin = sb.begin_submission

    def begin_then_crash(*a: Any, **k: Any) -> Any:
        begin(*a, **k)
        raise Crash

    monkeypatch.setattr(batch_submit.sb, "begin_submission", begin_then_crash)
    with pytest.raises(Crash):
        run_cli(args, fake.env(), monkeypatch)
    monkeypatch.undo()
    assert fake.stats.batches_created == 0
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.batches_created == 1
    assert dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state")) == {"unsent": 6, "ok": 6}
    assert query(out, "SELECT batch_id FROM batch_submissions ORDER BY id")[0] == (sb.NOT_CREATED,)
    assert_all_ok_and_own_colour(out, made)


# -- create failures: lost answers are adopted, rejections retried, split or recorded -----------------

@pytest.fixture
def quick_create_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_submit, "CREATE_BACKOFF_S", 0.01)


def test_create_answer_lost_is_adopted_and_rejections_retried(tmp_path: Path, fake_anthropic_factory: Any,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             quick_create_backoff: None) -> None:
    made = make_images(tmp_path / "in", 6)
    # 1st create: the batch is created but the answer is a 500 (lost); 2nd: overloaded, nothing created; 3rd ok
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_create_faults=["lost:500", "reject:529"])
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "3"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.batches_created == 2, "the lost batch was found by listing, not created again"
    assert items_sent(fake) == 6 and max(fake.stats.batch_answered_by_key.values()) == 1
    assert_all_ok_and_own_colour(out, made)


def test_create_rejected_too_large_splits_else_stops(tmp_path: Path, fake_anthropic_factory: Any,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       quick_create_backoff: None) -> None:
    made = make_images(tmp_path / "in", 4)
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_create_faults=["reject:413"])
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert query(out, "SELECT item_count FROM batches ORDER BY created_at") == [(2,), (2,)]
    assert_all_ok_and_own_colour(out, made)

    make_images(tmp_path / "in2", 2, size=(230, 210))  # other content: new jobs
    # calls so far: the rejected one and the two halves; the next create is refused as invalid, not for its
    # size: the run stops (exit 2) and the images stay pending, never failed (tests/test_batch_limits.py)
    fake.config.batch_create_faults = ["reject:413", "", "", "reject:400"]
    code, output = run_cli(["run", str(tmp_path / "in2"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 2, output
    rows = read_jsonl(out / "results.jsonl")  # this run's inputs only (README "Which files the results cover")
    assert [r["status"] for r in rows] == ["pending", "pending"]


def test_budget_stops_submitting(tmp_path: Path, fake_anthropic_factory: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 20)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    # haiku-4-5 at batch prices: ~ $0.0008 estimated per small image (the estimate errs high); $0.003 covers 3
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--model", "claude-haiku-4-5",
                            "--budget", "0.003"], fake.env(), monkeypatch)
    assert code == 1, output
    held = re.search(r"budget of \$0\.003 reached \((\$[\d.]+) reserved for the requests submitted\)", output)
    assert held, output
    # each submitted request is reserved once (it was counted again when its batch was created: the stop came at
    # half the budget and said more was reserved than the budget allows)
    assert 0.0015 < float(held.group(1).lstrip("$")) <= 0.003, output
    rows = read_jsonl(out / "results.jsonl")
    assert 0 < items_sent(fake) < 20
    assert sum(r["cost_usd"] or 0 for r in rows) <= 0.003
    assert {r["status"] for r in rows} == {"ok", "pending"}


def test_resubmission_rereads_the_file_and_notices_it_changed(tmp_path: Path, fake_anthropic_factory: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_processing_s=0.05, p_batch_expired=1.0)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--detach"]
    assert run_cli(args, fake.env(), monkeypatch)[0] == 0
    time.sleep(0.1)
    fake.client().messages.batches.list()  # the fake settles results lazily: now, while p_batch_expired=1
    # every item expired; meanwhile one file was replaced by another picture
    Image.new("RGB", (240, 220), (250, 10, 10)).save(tmp_path / "in" / "img_0001.jpg", quality=95)
    made["img_0001.jpg"] = (250, 10, 10)
    fake.config.p_batch_expired = 0.0
    code, output = run_cli(args[:-1], fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made)
    # the old content's job could not be resubmitted: recorded with its cause, not sent with the wrong image
    (failed,) = query(out, "SELECT error_type, error_message FROM jobs WHERE status='failed'")
    assert failed[0] == "source_changed" and "changed" in failed[1]
    assert max(fake.stats.batch_answered_by_key.values()) == 1


def test_collection_interrupted_midway_never_records_an_item_twice(tmp_path: Path, fake_anthropic_factory: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 8)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST]
    settle = sb.settle_item
    calls = 0

    def settle_then_crash(*a: Any, **k: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise Crash  # killed after 3 results were stored
        return settle(*a, **k)

    monkeypatch.setattr(batch_collect.sb, "settle_item", settle_then_crash)
    with pytest.raises(Crash):
        run_cli(args, fake.env(), monkeypatch)
    monkeypatch.undo()
    assert query(out, "SELECT COUNT(*) FROM jobs WHERE status='ok'") == [(3,)]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made)
    assert fake.stats.batches_created == 1 and items_sent(fake) == 8
    assert query(out, "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM attempts GROUP BY job_id)") == [(1,)]


# -- errored, expired, permanent -----------------------------------------------------------------------

def test_errored_and_expired_resubmitted_permanent_error_fails(tmp_path: Path, fake_anthropic_factory: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 24)
    bad = made["img_0007.jpg"]

    def reject_bad(ctx: dict[str, Any]) -> dict[str, Any] | None:
        if ctx["image_key"] and close_to(ctx["image_key"], bad):
            return {"status": 400, "message": "Could not process image"}
        return None

    fake = fake_anthropic_factory(batch_processing_s=0.05, p_batch_errored=0.2, p_batch_expired=0.15, seed=3,
                                  respond=reject_bad)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "8"],
                           fake.env(), monkeypatch)
    assert code == 1, output
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    failed = rows.pop("img_0007.jpg")
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "invalid_request_error"
    assert "Could not process image" in failed["error"]["message"]
    for path, row in rows.items():
        assert row["status"] == "ok" and close_to(row["fields"]["color"], made[path])
    states = dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
    assert states.get("errored", 0) > 0 and states.get("expired", 0) > 0, states
    # a permanent error is not resubmitted: it is the bad job's last batch item
    (bad_job,) = query(out, "SELECT id FROM jobs WHERE status='failed'")
    bad_states = [r[0] for r in query(out, "SELECT state FROM batch_items WHERE job_id=? ORDER BY rowid", bad_job[0])]
    assert bad_states[-1] == "failed" and "failed" not in bad_states[:-1]
    assert max(fake.stats.batch_answered_by_key.values()) == 1


def test_batch_and_resubmissions_send_the_sync_image_size(tmp_path: Path, recording_anthropic: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's own max image edge sizes every image it is sent: in sync mode, in a batch, and when an
    errored or expired batch item is read from disk again and resubmitted."""
    import base64
    import io
    from dataclasses import replace

    from imgtag.providers.anthropic_provider import AnthropicProvider

    monkeypatch.setattr(AnthropicProvider, "capabilities",
                        replace(AnthropicProvider.capabilities, max_image_edge=300))
    make_images(tmp_path / "in", 8, size=(600, 500))  # larger than the provider's edge

    def sizes(fake: Any) -> set[tuple[int, int]]:
        out = set()
        for seen in fake.seen:
            for block in seen["request"]["messages"][0]["content"]:
                if block["type"] == "image":
                    with Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))) as im:
                        out.add(im.size)
        return out

    sync = recording_anthropic()
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "sync"), "-q"], sync.env(),
                           monkeypatch)
    assert code == 0, output
    batch = recording_anthropic(batch_processing_s=0.02, p_batch_errored=0.3, p_batch_expired=0.2, seed=4)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "batch"), *FAST], batch.env(),
                           monkeypatch)
    assert code == 0, output
    states = dict(query(tmp_path / "batch", "SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
    assert states.get("errored", 0) + states.get("expired", 0) > 0, states  # some were read again and resubmitted
    assert sizes(sync) == {(300, 250)}
    assert sizes(batch) == sizes(sync)


def test_transient_errors_give_up_after_the_cap(tmp_path: Path, fake_anthropic_factory: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_processing_s=0.02, p_batch_errored=1.0, batch_errored_type="overloaded_error")
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--poll-interval", "0.02"],
                           fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(out / "results.jsonl")
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error"]["type"] for r in rows} == {"overloaded_error"}
    assert all("gave up" in r["error"]["message"] for r in rows)
    cap = batch_collect.MAX_BATCH_ATTEMPTS
    assert fake.stats.batches_created == cap and items_sent(fake) == 3 * cap
    assert all(r["cost_usd"] == 0 for r in rows), "errored requests are not billed"


# -- detach, status, re-attach ---------------------------------------------------------------------------

def test_detach_status_then_rerun_collects(tmp_path: Path, fake_anthropic_factory: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 9)
    fake = fake_anthropic_factory(batch_processing_s=1.5)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "5", "--detach"]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert "2 batches in flight" in output
    ids = [r[0] for r in query(out, "SELECT id FROM batches ORDER BY created_at")]
    assert len(ids) == 2 and all(i in output for i in ids)
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("batched",)]

    code, status_out = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0
    for batch_id in ids:
        assert re.search(rf"batch {batch_id}: in_progress, \d requests", status_out), status_out
    code, status_json = run_cli(["status", "--out", str(out), "--json"], {}, monkeypatch)
    live = json.loads(status_json)["batches"]
    assert [b["id"] for b in live] == ids and {b["processing_status"] for b in live} == {"in_progress"}
    assert live[0]["request_counts"]["processing"] == 5  # an object, not JSON text

    # the same command again while they are still in flight: nothing is submitted twice
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.batches_created == 2 and items_sent(fake) == 9

    time.sleep(1.6)
    code, output = run_cli(args, fake.env(), monkeypatch)  # --detach still: collects what has ended
    assert code == 0, output
    assert fake.stats.batches_created == 2 and items_sent(fake) == 9
    assert_all_ok_and_own_colour(out, made)
    code, status_out = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert "batch msgbatch_" not in status_out


# -- cancel ----------------------------------------------------------------------------------------------

def test_cancel_returns_items_to_pending_then_run_finishes(tmp_path: Path, fake_anthropic_factory: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    fake = fake_anthropic_factory(batch_processing_s=30.0, batch_cancel_s=0.05)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "3"]
    code, output = run_cli([*args, "--detach"], fake.env(), monkeypatch)
    assert code == 0, output

    code, output = run_cli(["cancel", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith("batch ")]
    assert len(lines) == 2
    assert all("canceled; 0 answered and recorded, 0 failed, 3 back to pending" in line for line in lines), output
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("pending",)]
    assert not query(out, "SELECT id FROM batches WHERE collected_at IS NULL")

    fake.config.batch_processing_s = 0.1
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made)
    assert items_sent(fake) == 12 and max(fake.stats.batch_answered_by_key.values()) == 1


def test_cancel_records_what_was_already_answered(tmp_path: Path, fake_anthropic_factory: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 4)
    # the cancel arrives too late: the batch ends normally while "canceling", every item answered (and paid)
    fake = fake_anthropic_factory(batch_processing_s=0.8, batch_cancel_s=10.0)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--detach"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    code, output = run_cli(["cancel", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0, output
    assert "canceled; 4 answered and recorded, 0 failed, 0 back to pending" in output
    assert_all_ok_and_own_colour(out, made)
    assert query(out, "SELECT COUNT(*) FROM attempts WHERE mode='batch' AND outcome='ok' AND cost_usd > 0") == [(4,)]


def test_cancel_with_nothing_live(tmp_path: Path, fake_anthropic_factory: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    assert run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)[0] == 0
    code, output = run_cli(["cancel", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0 and "no live batches" in output


# -- mixed modes, prices, fatal errors -------------------------------------------------------------------

def test_sync_then_batch_with_another_model_on_one_store(tmp_path: Path, fake_anthropic_factory: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 8)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    base = ["run", str(tmp_path / "in"), "--out", str(out), "-q"]
    code, output = run_cli([*base, "--model", "claude-sonnet-4-6"], fake.env(), monkeypatch)
    assert code == 0, output
    code, output = run_cli([*base, "--model", "claude-haiku-4-5", "--mode", "batch", "--poll-interval", "0.05"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made)
    by_model = dict(query(out, "SELECT model || '/' || mode, COUNT(*) FROM jobs WHERE status='ok' GROUP BY 1"))
    assert by_model == {"claude-sonnet-4-6/sync": 8, "claude-haiku-4-5/batch": 8}
    assert fake.stats.messages_requests == 8 and items_sent(fake) == 8
    # both are done: running either again asks nothing
    assert run_cli([*base, "--model", "claude-sonnet-4-6"], fake.env(), monkeypatch)[0] == 0
    assert run_cli([*base, "--model", "claude-haiku-4-5", "--mode", "batch"], fake.env(), monkeypatch)[0] == 0
    assert fake.stats.messages_requests == 8 and items_sent(fake) == 8


def test_costs_recorded_at_batch_prices(tmp_path: Path, fake_anthropic_factory: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 5)
    fake = fake_anthropic_factory(batch_processing_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--model", "claude-haiku-4-5"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    rows = query(out, "SELECT input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens,"
                      " cost_usd, batch_id FROM attempts WHERE mode='batch' AND outcome='ok'")
    assert len(rows) == 5
    for inp, out_tokens, writes, reads, cost, batch_id in rows:
        assert inp > 0 and out_tokens > 0 and batch_id.startswith("msgbatch_")
        # A batch request marks its cached prefix with the 1-hour TTL, so any write is a 1-hour one.
        assert cost == pytest.approx(batch_cost("claude-haiku-4-5", input_tokens=inp, output_tokens=out_tokens,
                                                cache_read=reads, cache_write_1h=writes), rel=1e-9)
    jsonl_cost = sum(r["cost_usd"] for r in read_jsonl(out / "results.jsonl"))
    assert jsonl_cost == pytest.approx(sum(r[4] for r in rows))


def test_bad_key_is_fatal_before_any_batch(tmp_path: Path, fake_anthropic_factory: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 4)
    fake = fake_anthropic_factory()
    env = fake.env() | {"ANTHROPIC_API_KEY": "sk-ant-wrong-key-123456"}
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), *FAST], env, monkeypatch)
    assert code == 2
    assert "ANTHROPIC_API_KEY" in output and "sk-ant-wrong-key-123456" not in output
    assert fake.stats.batches_created == 0
    # the submission that was refused is not left for reconciliation; its jobs are pending
    assert query(tmp_path / "o", "SELECT batch_id FROM batch_submissions") == [(sb.NOT_CREATED,)]
    assert query(tmp_path / "o", "SELECT DISTINCT status FROM jobs") == [("pending",)]


def test_progress_text_shows_batches_by_state_and_counts() -> None:
    stats = BatchStats()
    assert stats.describe() == "no live batches"
    stats.live = {"a": ("in_progress", {"processing": 10, "succeeded": 0}),
                  "b": ("ended", {"processing": 0, "succeeded": 8, "errored": 2}),
                  "c": ("in_progress", {"processing": 4})}
    assert stats.describe() == "batches 1 ended, 2 in_progress (processing 14, succeeded 8, errored 2)"
    assert stats.in_batches == 14


# -- memory ---------------------------------------------------------------------------------------------

def _distinct_images(folder: Path, n: int, offset: int = 0) -> None:
    # 11 levels per channel, 24 apart: JPEG never merges two of them into identical files
    levels = [10 + 24 * k for k in range(11)]
    colours = [(r, g, b) for r in levels for g in levels for b in levels]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (200, 200), colours[offset + i]).save(folder / f"m{i:04d}.jpg", quality=90)


def test_memory_stays_flat_while_collecting_1000_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Collect a 20-result batch (warm-up: first-use imports and caches), then a 1,000-result one, and compare
    the Python heap peaks while each is collected. Holding 1,000 parsed results alone takes ~5 MB."""
    n = 1000
    _distinct_images(tmp_path / "big", n)
    _distinct_images(tmp_path / "small", 20, offset=n)
    # The fake runs in its own process so its memory (it keeps every batch) is not traced here.
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0", "--config",
                             json.dumps({"batch_processing_s": 0.1})], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert fake.stdout is not None
        env = {"ANTHROPIC_API_KEY": "sk-ant-test-key", "ANTHROPIC_BASE_URL": fake.stdout.readline().strip()}
        out = tmp_path / "out"
        async def no_sweep(self: Any, batch_ids: list[str]) -> int:
            return 0

        # The 20-result batch may end before the second run starts: that run must not collect it (the warm-up
        # is the measured run's), whatever the machine's load.
        with monkeypatch.context() as m:
            m.setattr(batch_collect.Collector, "sweep", no_sweep)
            for folder in ("small", "big"):
                code, output = run_cli(["run", str(tmp_path / folder), "--out", str(out), *FAST, "--detach"], env,
                                       monkeypatch)
                assert code == 0, output
        assert query(out, "SELECT item_count FROM batches ORDER BY created_at") == [(20,), (n,)]
        assert query(out, "SELECT COUNT(*) FROM batches WHERE collected_at IS NULL") == [(2,)]
        time.sleep(0.2)

        peaks: list[tuple[int, int]] = []
        original = batch_collect.Collector.collect

        async def measured(self: Any, batch_id: str, *polled: Any) -> Any:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            tally = await original(self, batch_id, *polled)
            peaks.append((tracemalloc.get_traced_memory()[1] - before, sum(tally.values()) if tally else 0))
            return tally

        monkeypatch.setattr(batch_collect.Collector, "collect", measured)
        tracemalloc.start()
        try:
            code, output = run_cli(["run", str(tmp_path / "big"), "--out", str(out), *FAST], env, monkeypatch)
        finally:
            tracemalloc.stop()
        assert code == 0, output
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    # Which batch a sweep reaches first, and whether a poll under load has to be repeated, is timing: compare
    # the two complete collections by size, not by order (a collection that broke off and was redone counts 0).
    done = sorted((p for p in peaks if p[1]), key=lambda p: p[1])
    assert [count for _, count in done] == [20, n], peaks
    (small_peak, _), (big_peak, _) = done
    assert big_peak < 2_500_000, f"collecting {n} results peaked at {big_peak:,} bytes"
    assert (big_peak - small_peak) / (n - 20) < 1_000, (small_peak, big_peak)  # < 1 KB per extra result
    assert query(out, "SELECT COUNT(*) FROM jobs WHERE status='ok'") == [(n + 20,)]


def test_truncated_batch_answer_is_asked_again_with_more_room(tmp_path, fake_anthropic_factory, monkeypatch):
    make_images(tmp_path / "in", 3)
    asked: list[int] = []

    def truncate_everything(ctx):
        asked.append(ctx["request"]["max_tokens"])
        return {"output_mode": "truncated"}

    fake = fake_anthropic_factory(respond=truncate_everything, batch_processing_s=0.05)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(out / "results.jsonl")
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error"]["type"] for r in rows} == {"truncated"}
    base = min(asked)
    assert sorted(asked) == [base] * 3 + [2 * base] * 3  # one more ask each, with twice the room
    assert all(r["cost_usd"] > 0 for r in rows)  # both truncated answers were billed and recorded


def test_a_batch_answer_that_fails_validation_keeps_its_text(tmp_path, fake_anthropic_factory, monkeypatch):
    made = make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(output_mode="invalid", batch_processing_s=0.05)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 1, output
    assert len([k for (k,) in query(out, "SELECT raw_answer FROM attempts") if k]) == 4  # both asks of both images
    for row in read_jsonl(out / "results.jsonl"):
        assert row["status"] == "failed" and close_to(json.loads(row["error"]["raw_answer"])["unexpected_field"],
                                                       made[row["path"]]), row


def test_a_server_without_message_batches_stops_before_creating_anything(tmp_path, fake_anthropic_factory,
                                                                          monkeypatch):
    """A gateway (LiteLLM's proxy) that answers 404 on /v1/messages/batches: one sentence, exit 2, before anything
    is created (no store, no batch), so every image is still to do."""
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batches_api=False)
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 2, output
    assert output.strip() == "imgtag: this server has no Message Batches API; run without --mode batch", output
    assert fake.stats.batches_created == 0 and fake.stats.messages_requests == 0
    assert not (out / "imgtag.db").exists()


def test_a_batch_create_answered_404_says_the_server_has_no_batch_api(tmp_path, fake_anthropic_factory,
                                                                        monkeypatch):
    """When the check before could not tell (here: the listing works, the create route is missing)."""
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_create_faults=["reject:404"])
    out = tmp_path / "o"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 2, output
    assert "this server has no Message Batches API; run without --mode batch" in output, output
    assert query(out, "SELECT COUNT(*) FROM batches") == [(0,)]
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} == {"pending"}


def test_cancel_when_the_server_does_not_answer_says_so_at_once(tmp_path: Path, fake_anthropic_factory: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With the server down, `imgtag cancel` waited 120 s, said 'still canceling after 120 s' of a batch whose cancel
    request never arrived, and exited 0."""
    make_images(tmp_path / "in", 2)
    fake = fake_anthropic_factory(batch_processing_s=30.0)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--detach"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    env = fake.env()
    fake.stop()
    started = time.monotonic()
    code, output = run_cli(["cancel", "--out", str(out)], env, monkeypatch)
    assert time.monotonic() - started < 60, output
    assert code == 2, output
    assert "still canceling" not in output and "not canceled" in output and "Traceback" not in output, output
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("batched",)]  # still theirs: nothing was canceled
