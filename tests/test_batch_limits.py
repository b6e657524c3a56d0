"""A batch create refused as a whole (issue 9 item 17): a gateway with lower caps than the API's (10,000 requests
or 32 MB, as older docs and compatible gateways have) answers 413 or a 400 about the number of requests. imgtag
halves the chunk, remembers the smaller limit for the rest of the run, and never fails an image for it; any
other create-level 400 stops the run (exit 2) with the images still pending, and a rerun resumes them."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from batchhelp import query
from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.providers.base import Permanent
from imgtag.request.batch import submit as batch_submit
from imgtag.request.batch.limits import BYTES, REQUESTS, oversize
from imgtag.store import batches as sb

FAST = ["--mode", "batch", "--poll-interval", "0.05", "-q"]


@pytest.fixture(autouse=True)
def quick_create_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_submit, "CREATE_BACKOFF_S", 0.01)


def assert_all_ok_once(out: Path, made: dict[str, tuple[int, int, int]], fake: Any) -> None:
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == len(made)
    for row in rows:
        assert row["status"] == "ok", row
        assert close_to(row["fields"]["color"], made[row["path"]]), (row["path"], row["fields"])
    answered = fake.stats.batch_answered_by_key
    assert len(answered) == len(made) and max(answered.values()) == 1, "an image was answered twice"


def test_gateway_request_count_cap_halves_and_remembers(tmp_path: Path, fake_anthropic_factory: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 30)
    # A gateway allowing 5 requests per batch; imgtag's own limit is the API's (100,000): one chunk of 30.
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_max_requests=5, batch_cap_style="gateway")
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_once(out, made, fake)
    sizes = [n for (n,) in query(out, "SELECT item_count FROM batches ORDER BY created_at")]
    assert sum(sizes) == 30 and max(sizes) <= 5, sizes
    # 30 -> 15 (refused) -> 7 (refused) -> 3 + 4; from then on the learned 4 holds: 8 -> 4 + 4, 15 -> 4+4+4+3.
    # Without remembering, each 15 and each 7 or 8 would be refused again (7 refusals).
    assert fake.stats.batch_creates_refused == 3
    assert "--batch-max-requests 4 to start there next time" in output  # what worked, for the next run
    assert not query(out, "SELECT id FROM jobs WHERE status='failed'")


def test_gateway_byte_cap_halves_and_remembers(tmp_path: Path, fake_anthropic_factory: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 18)
    # ~5.3 KB per request here: 3 fit under the gateway's 18,500 bytes, 4 do not. Its 413 is an HTML page.
    cap = 18_500
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_max_bytes=cap, batch_cap_style="gateway")
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "6"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    assert_all_ok_once(out, made, fake)
    batches = query(out, "SELECT item_count, bytes FROM batches ORDER BY created_at")
    assert sum(n for n, _ in batches) == 18
    assert all(b <= cap for _, b in batches), batches
    # The first chunk of 6 is refused and halved; the chunks after it are built to the learned size.
    assert fake.stats.batch_creates_refused == 1
    mb = float(re.search(r"--batch-max-mb ([0-9.]+) to start there", output).group(1))  # type: ignore[union-attr]
    assert 3 * 5000 < mb * 1024 * 1024 * 0.95 < cap, mb
    assert not query(out, "SELECT id FROM jobs WHERE status='failed'")


def test_other_create_400_stops_with_images_pending_then_rerun_resumes(tmp_path: Path, fake_anthropic_factory: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 6)
    # The first batch is created; the second create is refused for a reason that is not about its size.
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_create_faults=["", "reject:400"])
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), *FAST, "--batch-max-requests", "3"]
    code, output = run_cli(args, fake.env(), monkeypatch)
    assert code == 2, output
    assert "Traceback" not in output
    said = [line for line in output.splitlines() if line.startswith("imgtag:")]  # the summary and files aside
    assert len(said) == 1 and "400" in said[0] and "pending" in said[0], output
    assert said[0].count(". ") == 0 and said[0].count("; ") <= 2, "one sentence"
    assert fake.stats.batches_created == 1
    statuses = dict(query(out, "SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    assert statuses == {"batched": 3, "pending": 3}, statuses  # never failed
    assert query(out, "SELECT batch_id FROM batch_submissions ORDER BY id")[1] == (sb.NOT_CREATED,)
    assert {r["status"] for r in read_jsonl(out / "results.jsonl")} <= {"pending", "ok"}

    code, output = run_cli(args, fake.env(), monkeypatch)  # the fault is gone: the rest is submitted
    assert code == 0, output
    assert_all_ok_once(out, made, fake)
    assert fake.stats.batches_created == 2 and sum(fake.stats.batch_items_by_key.values()) == 6


def test_a_single_request_over_the_byte_cap_fails_alone(tmp_path: Path, fake_anthropic_factory: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 3)
    # Noise does not compress: this one request is larger than everything the gateway takes.
    Image.frombytes("RGB", (700, 700), random.Random(1).randbytes(700 * 700 * 3)).save(tmp_path / "in" / "noise.png")
    fake = fake_anthropic_factory(batch_processing_s=0.05, batch_max_bytes=18_500, batch_cap_style="gateway")
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), *FAST], fake.env(), monkeypatch)
    assert code == 1, output
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["type"] == "request_too_large", failed
    assert sum(1 for r in rows.values() if r["status"] == "ok") == len(made)


@pytest.mark.parametrize(("status", "detail", "kind"), [
    (413, "Request exceeds the maximum allowed number of bytes.", BYTES),
    (413, "Error code: 413 - <html><head><title>413 Request Entity Too Large</title></head></html>", BYTES),
    (413, "too many requests in one batch (max 10000)", REQUESTS),
    (400, "requests: List should have at most 100000 items after validation, not 100001", REQUESTS),
    (400, "Batch contains 10001 requests, but the maximum number of requests per batch is 10000.", REQUESTS),
    (400, "batch body exceeds 32 MB", BYTES),
    (400, "Invalid request.", None),
    (400, "requests: List should have at least 1 item", None),
    (400, "requests.3.custom_id: Duplicate custom_id 'j1-2'; custom_id must be unique within a batch", None),
    (400, "requests.0.params.max_tokens: Field required", None),
])
def test_which_refusals_are_about_size(status: int, detail: str, kind: str | None) -> None:
    prefix = "request too large" if status == 413 else "invalid request"
    assert oversize(Permanent(f"{prefix} ({status}): {detail}", http_status=status)) == kind
