"""`--provider openai --mode batch`: OpenAI's Batch API (a JSONL file on /v1/files, /v1/batches) through the SDK,
against the fake server's Batch API (tests/fakes/openai_batch_api.py, the real wire format). The same
guarantees as Message Batches: commit before create and a reconcile by label, re-attach after kill -9, items
never answered twice, expired/failed/errored items resubmitted up to the cap, cancel, --detach, per-file
limits, packs, batch prices; a server without the API is refused before anything is created."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from batchhelp import assert_all_ok_and_own_colour, query
from imagegen import make_images, one_sentence, read_jsonl, run_cli
from imgtag.pricing.costs import Usage, cost_usd
from imgtag.providers import openai_batches
from imgtag.providers.batch_api import CANCELED, ENDED, ERRORED, EXPIRED, IN_PROGRESS
from imgtag.providers.openai_batches import handle, line_of, request_bytes
from imgtag.request.batch import collect as batch_collect
from imgtag.request.batch import submit as batch_submit
from imgtag.store import batches as sb

KEY = "sk-test-batch"
MODEL = "gpt-4.1-mini"
OPENAI_BATCH = {"mode": "batch", "provider": "openai"}  # what every result row says
FAST = ["--provider", "openai", "--mode", "batch", "--poll-interval", "0.05", "-q"]


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs, nothing catches it."""


@pytest.fixture
def batch_fake(fake_openai_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``make(**BatchAPIConfig fields)`` -> an OpenAI fake serving the Batch API."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    def make(**batches: Any) -> Any:
        return fake_openai_factory(variant="openai", api_key=KEY, models=(MODEL,),
                                   batches={"processing_s": 0.1, **batches})

    return make


def answered_once(fake: Any, images: int) -> None:
    answered = fake.batch_api.stats.answered_by_key
    assert len(answered) == images and max(answered.values()) == 1, "an image was answered twice"


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *FAST, *extra]


# -- the wire --------------------------------------------------------------------------------------------

def test_request_size_is_the_uploaded_line() -> None:
    params = {"model": MODEL, "messages": [{"role": "user", "content": "中文 \"quoted\""}], "max_tokens": 9}
    cid = sb.custom_id(123, 45)
    line = line_of(cid, params).encode()
    assert json.loads(line) == {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": params}
    assert request_bytes(params) == len(line) + (64 - len(cid))  # measured with the id at its 64-char maximum


@pytest.mark.parametrize("status, state, unlisted", [
    ("validating", IN_PROGRESS, None), ("finalizing", IN_PROGRESS, None), ("cancelling", "canceling", None),
    ("completed", ENDED, None), ("expired", ENDED, EXPIRED), ("cancelled", ENDED, CANCELED),
    ("failed", ENDED, ERRORED)])
def test_batch_states_map_onto_the_flow(status: str, state: str, unlisted: str | None) -> None:
    batch = openai.types.Batch.construct(
        id="batch_1", object="batch", status=status, created_at=1_700_000_000, endpoint="/v1/chat/completions",
        input_file_id="file-1", completion_window="24h", metadata={"imgtag_submission": "imgtag-ab-3"},
        request_counts=openai.types.BatchRequestCounts(total=10, completed=6, failed=1),
        completed_at=1_700_000_100 if status == "completed" else None,
        expired_at=1_700_000_100 if status == "expired" else None, cancelled_at=None, failed_at=None,
        errors=None)
    h = handle(batch)
    assert (h.processing_status, h.unlisted, h.label) == (state, unlisted, "imgtag-ab-3")
    assert h.counts["succeeded"] == 6 and h.counts["errored"] == 1
    assert h.counts["processing"] == (3 if state != ENDED else 0)
    assert h.counts["expired"] == (3 if status == "expired" else 0)


# -- runs ------------------------------------------------------------------------------------------------

def test_batch_run_uploads_jsonl_chunks_and_bills_half(tmp_path: Path, batch_fake: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 7)
    fake = batch_fake()
    out = tmp_path / "out"
    code, output = run_cli(run_args(tmp_path, "--batch-max-requests", "3"), fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made, **OPENAI_BATCH)
    stats = fake.batch_api.stats
    assert stats.batches_created == 3 and stats.files_uploaded == 3
    assert [n for (n,) in query(out, "SELECT item_count FROM batches ORDER BY rowid")] == [3, 3, 1]
    assert all(i.startswith("batch_") for (i,) in query(out, "SELECT id FROM batches"))
    answered_once(fake, 7)
    # Billed at the batch price: half the standard rate, from the usage the output file reported.
    from imgtag.pricing.catalogue import catalogue

    prices = catalogue().get(MODEL).prices
    for inp, outp, cost in query(out, "SELECT input_tokens, output_tokens, cost_usd FROM attempts"):
        usage = Usage(input_tokens=inp, output_tokens=outp)
        assert cost == pytest.approx(cost_usd(prices, usage, batch=True))
        assert cost == pytest.approx(cost_usd(prices, usage) / 2)


def test_dry_run_estimate_shows_the_batch_price(tmp_path: Path, batch_fake: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 12)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--provider", "openai",
                            "--mode", "batch", "--dry-run", "--price-in", "2", "--price-out", "8"],
                           {"OPENAI_API_KEY": KEY}, monkeypatch)
    assert code == 0, output
    standard, batch = (float(x) for x in re.search(r"\$([\d.]+) standard, \$([\d.]+) batch", output).groups())
    assert batch == pytest.approx(standard / 2, rel=0.05)


@pytest.mark.parametrize("variant", ["vllm", "ollama", "lmstudio", "llamacpp"])
def test_a_server_without_the_batch_api_is_refused_before_anything_is_created(
        tmp_path: Path, fake_openai_factory: Any, monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    make_images(tmp_path / "in", 2)
    fake = fake_openai_factory(variant=variant)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--provider", "openai", "--model",
                            "glm-4v-9b", "--mode", "batch"], {"OPENAI_BASE_URL": fake.base_url}, monkeypatch)
    assert code == 2, output
    line = one_sentence(output)
    assert "has no OpenAI Batch API" in line and "--mode sync" in line, line
    assert not out.exists(), "a refused run creates nothing"
    assert fake.stats.requests == 0, "no image was sent"


def test_a_lost_create_answer_is_found_by_label_without_uploading_again(tmp_path: Path, batch_fake: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_submit, "CREATE_BACKOFF_S", 0.01)
    made = make_images(tmp_path / "in", 4)
    # The batch is created, but its answer is lost (500): the submitter lists batches and finds it by label.
    fake = batch_fake(create_faults=["lost:500"])
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 0, output
    stats = fake.batch_api.stats
    assert stats.batches_created == 1 and stats.files_uploaded == 1
    answered_once(fake, 4)
    assert_all_ok_and_own_colour(tmp_path / "out", made, **OPENAI_BATCH)


def test_crash_between_create_and_commit_is_reconciled_by_label(tmp_path: Path, batch_fake: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 5)
    # While validating, a real batch reports 0 requests: only its label can tell it is ours.
    fake = batch_fake(validating_s=1.0, processing_s=1.2)
    out = tmp_path / "out"

    def crash(*_a: Any, **_k: Any) -> None:
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(batch_submit.sb, "attach_batch", crash)  # created remotely, id never stored
        with pytest.raises(Crash):
            run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert fake.batch_api.stats.batches_created == 1
    assert query(out, "SELECT item_count FROM batch_submissions WHERE batch_id IS NULL") == [(5,)]
    # Someone else's batch of the same size on the same account, created after ours: never adopted.
    client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0)
    upload = client.files.create(file=("other.jsonl", "".join(
        line_of(f"other-{i}", {"model": MODEL, "messages": []}) + "\n" for i in range(5)).encode()), purpose="batch")
    other = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"imgtag_submission": "imgtag-0000000000000000-1"})
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.batch_api.stats.batches_created == 2, "ours was adopted, not created again"
    assert other.id not in {i for (i,) in query(out, "SELECT id FROM batches")}
    assert sum(fake.batch_api.stats.items_by_key.values()) == 5
    answered_once(fake, 5)
    assert_all_ok_and_own_colour(out, made, **OPENAI_BATCH)


@pytest.mark.parametrize("listed", [True, False])  # requests that never ran: in the error file, or not at all
def test_failed_expired_and_errored_requests_are_resubmitted(tmp_path: Path, batch_fake: Any,
                                                             monkeypatch: pytest.MonkeyPatch, listed: bool) -> None:
    made = make_images(tmp_path / "in", 8)
    # 1st batch fails validation (enqueued token limit), 2nd expires with half answered, 10% of lines are 500s.
    fake = batch_fake(fail_batches=1, expire_batches=1, p_item_error=0.15, seed=3, list_unprocessed=listed)
    out = tmp_path / "out"
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made, **OPENAI_BATCH)
    answered_once(fake, 8)
    states = dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state"))
    assert states["ok"] == 8 and states["expired"] == 4 and states["errored"] >= 8, states
    messages = [m for (m,) in query(out, "SELECT error_message FROM attempts WHERE outcome='retry'")]
    assert any("Enqueued token limit" in m for m in messages), messages
    assert query(out, "SELECT COUNT(*) FROM attempts WHERE outcome='retry' AND cost_usd > 0") == [(0,)]


def test_a_batch_that_keeps_failing_gives_up_at_the_cap(tmp_path: Path, batch_fake: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 2)
    fake = batch_fake(fail_batches=100)
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 1, output
    rows = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert {r["status"] for r in rows} == {"failed"}
    assert all("Enqueued token limit" in r["error"]["message"] and "gave up" in r["error"]["message"] for r in rows)
    assert fake.batch_api.stats.batches_created == batch_collect.MAX_BATCH_ATTEMPTS


def test_a_request_the_api_refuses_fails_alone(tmp_path: Path, batch_fake: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from test_openai_provider import expected_keys

    made = make_images(tmp_path / "in", 4)
    bad = sorted(made)[1]
    fake = batch_fake()
    fake.config.mode_overrides = {expected_keys(tmp_path / "in", MODEL)[bad]: "error:400"}
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 1, output
    rows = {r["path"]: r for r in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert rows[bad]["status"] == "failed" and rows[bad]["error"]["type"] == "invalid_request_error", rows[bad]
    assert "Invalid image" in rows[bad]["error"]["message"]
    assert sorted(p for p, r in rows.items() if r["status"] == "ok") == [p for p in sorted(made) if p != bad]
    assert fake.batch_api.stats.batches_created == 1, "a refused request is not resubmitted"


def test_packs_land_each_answer_on_its_own_image(tmp_path: Path, batch_fake: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 7)
    fake = batch_fake()
    code, output = run_cli(run_args(tmp_path, "--images-per-request", "3"), fake.env(), monkeypatch)
    assert code == 0, output
    assert sum(fake.batch_api.stats.items_by_custom_id.values()) == 3  # 3 + 3 + 1 images
    assert_all_ok_and_own_colour(tmp_path / "out", made, **OPENAI_BATCH)
    answered_once(fake, 7)


def test_the_api_limits_per_file_bind_below_the_flags(tmp_path: Path, batch_fake: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert (openai_batches.API_MAX_REQUESTS, openai_batches.API_MAX_BYTES) == (50_000, 200 * 1024 * 1024)
    monkeypatch.setattr(openai_batches.OpenAIBatches, "max_requests", 2)  # stands in for 50,000
    made = make_images(tmp_path / "in", 5)
    fake = batch_fake()
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)  # --batch-max-requests: 100,000
    assert code == 0, output
    assert [n for (n,) in query(tmp_path / "out", "SELECT item_count FROM batches ORDER BY rowid")] \
        == [2, 2, 1]
    assert_all_ok_and_own_colour(tmp_path / "out", made, **OPENAI_BATCH)


def test_a_smaller_cap_on_the_server_halves_the_file(tmp_path: Path, batch_fake: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    fake = batch_fake(max_requests=3)  # a gateway allowing 3 requests per file: 400 naming the limit
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 0, output
    assert "--batch-max-requests 3" in output
    sizes = [n for (n,) in query(tmp_path / "out", "SELECT item_count FROM batches ORDER BY rowid")]
    assert sizes == [3, 3], sizes
    assert fake.batch_api.stats.creates_refused == 1
    assert_all_ok_and_own_colour(tmp_path / "out", made, **OPENAI_BATCH)


@pytest.mark.parametrize("listed", [True, False])
def test_detach_cancel_then_run(tmp_path: Path, batch_fake: Any, monkeypatch: pytest.MonkeyPatch,
                                listed: bool) -> None:
    made = make_images(tmp_path / "in", 3)
    # Still validating: the API counts no requests yet, imgtag still shows the 3 it sent as on the server.
    fake = batch_fake(processing_s=30.0, validating_s=30.0, list_unprocessed=listed)
    out = tmp_path / "out"
    code, output = run_cli(run_args(tmp_path, "--detach"), fake.env(), monkeypatch)
    assert code == 0, output
    assert "1 batch in flight" in output
    assert "`imgtag status` shows it, and running the same command again collects its results" in output, output
    assert query(out, "SELECT DISTINCT status FROM jobs") == [("batched",)]
    code, output = run_cli(["status", "--out", str(out), "--json"], fake.env(), monkeypatch)
    (live,) = json.loads(output)["batches"]
    assert live["processing_status"] == "in_progress" and live["request_counts"]["processing"] == 3, live
    code, output = run_cli(["cancel", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0, output
    assert "canceled; 0 answered and recorded, 0 failed, 3 back to pending" in output
    assert dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state")) == {"canceled": 3}
    fake.batch_api.config.processing_s = fake.batch_api.config.validating_s = 0.1
    code, output = run_cli(run_args(tmp_path), fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_and_own_colour(out, made, **OPENAI_BATCH)
    assert fake.batch_api.stats.batches_created == 2
    answered_once(fake, 3)


def test_status_and_cancel_reach_the_batches_server(tmp_path: Path, batch_fake: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch run against a server named by --base-url: `status` and `cancel` ask that server (the one the run
    used, or the one their own --base-url names when it moved), never the provider's default."""
    make_images(tmp_path / "in", 3)
    fake = batch_fake(processing_s=30.0, validating_s=30.0)
    key_only = {"OPENAI_API_KEY": KEY}  # no OPENAI_BASE_URL: only the flag says where the server is
    out = tmp_path / "out"
    code, output = run_cli(run_args(tmp_path, "--detach", "--base-url", fake.base_url), key_only, monkeypatch)
    assert code == 0, output

    def live_batch(*flags: str) -> dict[str, Any]:
        code, output = run_cli(["status", "--out", str(out), "--json", *flags], key_only, monkeypatch)
        assert code == 0, output
        (batch,) = json.loads(output)["batches"]
        return batch

    assert live_batch()["live"] is True  # the run's server, remembered in the folder
    # The server moved: the remembered address no longer answers, --base-url says where it is now.
    db = sqlite3.connect(out / "imgtag.db")
    (record,) = db.execute("SELECT value FROM meta WHERE key='target'").fetchone()
    with db:
        db.execute("UPDATE meta SET value=? WHERE key='target'",
                   (json.dumps({**json.loads(record), "base_url": "http://127.0.0.1:9/v1"}),))
    db.close()
    assert live_batch()["live"] is False
    moved = live_batch("--base-url", fake.base_url)
    assert moved["live"] is True and moved["request_counts"]["processing"] == 3, moved
    code, output = run_cli(["cancel", "--out", str(out), "--base-url", fake.base_url], key_only, monkeypatch)
    assert code == 0, output
    assert "canceled; 0 answered and recorded, 0 failed, 3 back to pending" in output
    assert dict(query(out, "SELECT state, COUNT(*) FROM batch_items GROUP BY state")) == {"canceled": 3}


# -- kill -9 and re-attach (the real CLI in a subprocess) -------------------------------------------------

def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "IMGTAG_"))}
    return subprocess.Popen([sys.executable, "-m", "imgtag", *args], env=full_env | env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill9_after_batches_created_then_rerun_reattaches(tmp_path: Path, batch_fake: Any) -> None:
    images = 24
    made = make_images(tmp_path / "in", images)
    fake = batch_fake(processing_s=3.0)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--provider", "openai", "--mode", "batch",
            "--batch-max-requests", "4", "--poll-interval", "0.1", "-q"]
    proc = start_cli(args, fake.env())
    deadline = time.monotonic() + 90
    while fake.batch_api.stats.batches_created < 6:  # 24 images / 4 per batch
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "batches were never created"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not fake.batch_api.stats.answered_by_key, "killed while every batch was still in flight"

    rerun = start_cli(args, fake.env())
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert fake.batch_api.stats.batches_created == 6, "re-attached, nothing submitted again"
    assert sum(fake.batch_api.stats.items_by_key.values()) == images
    answered_once(fake, images)
    assert_all_ok_and_own_colour(out, made, **OPENAI_BATCH)
    assert not query(out, "SELECT id FROM batches WHERE collected_at IS NULL")
    assert not query(out, "SELECT id FROM batch_submissions WHERE batch_id IS NULL")
