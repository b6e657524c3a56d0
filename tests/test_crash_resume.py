"""kill -9 at arbitrary moments, then the same command again: nothing lost, nothing paid twice
beyond the requests in flight at each kill. Drives the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import EDGE, needs_full_corpus
from imagegen import close_to, make_images


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")} | env
    return subprocess.Popen([sys.executable, "-m", "imgtag", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def committed_ok(out: Path) -> int:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE status='ok'").fetchone()[0]
    finally:
        db.close()


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("pack", [1, 4])  # 4: --images-per-request, a pack of 4 images per request
def test_kill_nine_twice_then_rerun(tmp_path: Path, fake_anthropic_factory, pack: int) -> None:
    images = 40
    made = make_images(tmp_path / "in", images)
    answered: Counter[str] = Counter()  # per image (a pack answers several): what the server answered
    lock = threading.Lock()

    def count(ctx: dict[str, Any]) -> None:
        with lock:
            answered.update(ctx["image_keys"])

    def total() -> int:
        with lock:
            return sum(answered.values())

    fake = fake_anthropic_factory(latency_s=0.25, jitter_s=0.1, respond=count)
    args = ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--images-per-request", str(pack)]
    in_flight_at_kills = 0
    for threshold in (8, 22):
        proc = start_cli(args, fake.env())
        wait_until(lambda t=threshold, p=proc: total() >= t or p.poll() is not None)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        fake.wait_idle()  # the server finishes the requests that were in flight (and counts them answered)
        # In flight at the kill = answers the server produced that never reached the store.
        lost = total() - committed_ok(tmp_path / "out") - in_flight_at_kills
        assert 0 <= lost <= 64, lost  # bounded by the concurrency cap
        in_flight_at_kills += lost  # let the server finish (and count) the requests that were in flight
    proc = start_cli(args, fake.env())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == images and len({r["path"] for r in rows}) == images  # no duplicate rows
    for row in rows:
        assert row["status"] == "ok"
        assert close_to(row["fields"]["color"], made[row["path"]])
    assert total() <= images + in_flight_at_kills, (total(), in_flight_at_kills)
    answered_twice = sum(n - 1 for n in answered.values())
    assert answered_twice <= in_flight_at_kills


def test_second_run_on_same_store_is_refused(tmp_path: Path, fake_anthropic_factory) -> None:
    make_images(tmp_path / "in", 24)
    # 24 images at 2 s each through a probing window of 8: the first run lasts several seconds
    fake = fake_anthropic_factory(latency_s=2.0)
    args = ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q"]
    first = start_cli(args, fake.env())
    wait_until(lambda: fake.stats.messages_requests > 0)
    second = start_cli(args, fake.env())
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert b"another imgtag process" in err and b"Traceback" not in err
    first.communicate(timeout=60)
    assert first.returncode == 0


@needs_full_corpus
def test_edge_corpus_every_file_ends_with_a_reason(tmp_path: Path, fake_anthropic_factory) -> None:
    fake = fake_anthropic_factory()
    proc = start_cli(["run", str(EDGE), "--out", str(tmp_path / "out"), "-q", "--min-side", "0"], fake.env())
    _, err = proc.communicate(timeout=240)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 1  # the corpus has unreadable files: finished, with failures
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    files = [p for p in EDGE.rglob("*") if p.is_file()]
    assert len(rows) == len(files) == len({r["path"] for r in rows})
    for row in rows:
        assert row["status"] in ("ok", "failed", "skipped"), row
        if row["status"] != "ok":
            assert row["error"]["type"] and row["error"]["message"], row
            assert "\n" not in row["error"]["message"]
    statuses = {r["path"]: r["status"] for r in rows}
    assert statuses["zero_bytes.jpg"] != "ok"
    assert statuses["pillow_heif_200MP.heic"] == "failed"
    assert statuses["libvips_rotation_6_progressive.jpg"] == "ok"
    assert statuses["中文目录/火车票 照片.jpeg"] == "ok"
