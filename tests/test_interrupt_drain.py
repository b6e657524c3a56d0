"""The first Ctrl-C (or SIGTERM) of a sync run stops gracefully: nothing new is sent, and the answers already
asked for, which are paid for either way, are waited for (bounded) and stored; the second stops at once.

The real CLI in a subprocess against the fake servers on loopback (real time: the fakes' latency is a few seconds,
the shortest that leaves requests surely in flight when the signal comes on a loaded machine). "Paid for" is the
fake's count of answers it began (`answered_by_key`); a rerun must ask exactly for the images never answered.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from imagegen import make_images
from proctree import descendants, needs_proc, reap
from test_lifecycle import Cli, run_states, wait_for

pytestmark = needs_proc

IMAGES = 16


def job_counts(out: Path) -> dict[str, int]:
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    finally:
        db.close()


def begun(fake: Any) -> int:
    """Answers the fake has begun (and so billed): the Anthropic fake counts an answer at its first byte."""
    stats = fake.stats
    with stats.lock:
        return sum(stats.answered_by_key.values())


def arrivals_after(fake: Any, t: float) -> int:
    with fake.stats.lock:
        return sum(1 for entry in fake.stats.request_log if entry["t"] > t)


def interrupt(cli: Cli, sig: int = signal.SIGINT, *, times: int = 1, gap_s: float = 0.0) -> float:
    """The signal(s) to imgtag's process group, as a terminal's Ctrl-C; returns when the first was sent."""
    sent = time.time()
    for i in range(times):
        if i:
            wait_for(lambda: "Stopping:" in cli.output(0), cli, timeout=20)
            time.sleep(gap_s)
        os.killpg(cli.proc.pid, sig)
    return sent


def run_cli(tmp_path: Path, fake: Any, *extra: str) -> Cli:
    return Cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q", "--workers", "2",
                "--concurrency", "6", *extra], fake.env())


def finish(cli: Cli, timeout: float) -> tuple[int, float, str]:
    """Exit code, seconds from now to the exit, and stderr; nothing of imgtag left running."""
    start = time.monotonic()
    try:
        code = cli.proc.wait(timeout)
    finally:
        reap(descendants(cli.proc.pid) | {cli.proc.pid})
    return code, time.monotonic() - start, cli.output()


def test_the_first_ctrl_c_stores_the_answers_already_paid_for_and_the_rerun_asks_only_the_rest(
        tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", IMAGES)
    # Each answer begins at once (billed) and streams for 3 s: at the signal, several are half-way.
    fake = fake_anthropic_factory(latency_s=3.0, ttft_s=0.2)
    out = tmp_path / "out"
    cli = run_cli(tmp_path, fake)
    wait_for(lambda: begun(fake) >= 3, cli)
    sent = interrupt(cli)
    code, took, text = finish(cli, 40)
    assert code == 130, text
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert lines[0].startswith("Stopping: waiting up to 30 s for "), lines
    assert lines[0].endswith(" already paid for (Ctrl-C: stop now)"), lines
    assert all(len(line) <= 80 for line in lines), lines
    assert "answers arrived while stopping" in text or "answer arrived while stopping" in text, text
    assert arrivals_after(fake, sent + 1.0) == 0, "a request was sent after the Ctrl-C"
    paid = begun(fake)
    counts = job_counts(out)
    assert counts.get("ok", 0) == paid, (counts, paid)  # every answer begun is stored: none dropped
    assert counts.get("ok", 0) + counts.get("pending", 0) <= IMAGES and "failed" not in counts, counts
    assert run_states(out) == [("interrupted", 130)]
    assert took < 20, took

    # The rerun asks for exactly the images not answered: across both runs, one request per image.
    fake.config.latency_s = 0.0
    rerun = run_cli(tmp_path, fake)
    code, _, text = finish(rerun, 120)
    assert code == 0, text
    with fake.stats.lock:
        assert fake.stats.messages_requests == IMAGES
        assert sorted(fake.stats.answered_by_key.values()) == [1] * IMAGES


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", IMAGES)
    fake = fake_anthropic_factory(latency_s=30.0, ttft_s=0.2)  # answers that would take 30 s to finish
    out = tmp_path / "out"
    cli = run_cli(tmp_path, fake)
    wait_for(lambda: begun(fake) >= 2, cli)
    interrupt(cli, times=2, gap_s=0.2)
    code, took, text = finish(cli, 20)
    assert code == 130, text
    assert took < 10, took  # well before the answers in flight would end
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    said = " ".join(text.split())
    assert "dropped by the second stop" in said and "run the same command to continue" in said, said
    assert "ok" not in job_counts(out)
    assert run_states(out) == [("interrupted", 130)]


def test_sigterm_drains_within_its_shorter_bound_and_says_what_it_dropped(
        tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", IMAGES)
    fake = fake_anthropic_factory(latency_s=120.0, ttft_s=0.2)  # never finishes within the test
    out = tmp_path / "out"
    cli = run_cli(tmp_path, fake)
    wait_for(lambda: begun(fake) >= 2, cli)
    os.kill(cli.proc.pid, signal.SIGTERM)  # the main process only, as a service manager would
    code, took, text = finish(cli, 30)
    assert code == 143, text
    assert 4.5 < took < 15, took  # the 5 s bound, then the usual shutdown
    said = " ".join(text.split())
    assert said.startswith("Stopping: waiting up to 5 s for ") and "(SIGTERM: stop now)" in said, said
    assert "still unanswered after 5 s were dropped" in said or "still unanswered after 5 s was dropped" in said
    assert "ok" not in job_counts(out)
    assert run_states(out) == [("interrupted", 143)]


def test_sigterm_once_stores_what_was_in_flight(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", IMAGES)
    fake = fake_anthropic_factory(latency_s=2.0, ttft_s=0.2)
    out = tmp_path / "out"
    cli = run_cli(tmp_path, fake)
    wait_for(lambda: begun(fake) >= 2, cli)
    os.kill(cli.proc.pid, signal.SIGTERM)
    code, _, text = finish(cli, 30)
    assert code == 143, text
    assert job_counts(out).get("ok", 0) == begun(fake) >= 2, (job_counts(out), text)


def test_the_openai_compatible_provider_drains_too(tmp_path: Path, fake_openai_factory: Any) -> None:
    make_images(tmp_path / "in", IMAGES)
    fake = fake_openai_factory(latency_s=2.5)  # answered (and billed) at the end of the latency
    out = tmp_path / "out"
    cli = Cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--workers", "2", "--concurrency", "6",
               "--provider", "openai", "--model", "glm-4v-9b"], fake.env())
    wait_for(lambda: fake.stats.requests >= 3, cli)
    with fake.stats.lock:
        asked = fake.stats.requests
    os.killpg(cli.proc.pid, signal.SIGINT)
    code, _, text = finish(cli, 40)
    assert code == 130, text
    assert "Stopping: waiting up to 30 s for " in text, text
    with fake.stats.lock:
        answered, requests = fake.stats.answered, fake.stats.requests
    assert requests <= asked + 6  # at most those already on their way when the signal came
    assert job_counts(out).get("ok", 0) == answered >= asked, (job_counts(out), answered, asked)


def test_with_nothing_on_the_wire_the_first_ctrl_c_stops_at_once(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    # Every request is told to come back in 30 s: after the first answer, each waits for its retry or a permit,
    # and nothing is on the wire. Nothing is paid for, so nothing is waited for.
    make_images(tmp_path / "in", IMAGES)
    fake = fake_anthropic_factory(p_429=1.0, retry_after_s=30.0)
    cli = run_cli(tmp_path, fake)
    wait_for(lambda: fake.stats.rate_limited >= 1, cli)
    time.sleep(0.5)
    interrupt(cli)
    code, took, text = finish(cli, 30)
    assert code == 130, text
    assert took < 10, took
    assert "Stopping" not in text and "while stopping" not in text, text
    assert " ".join(text.split()).startswith("imgtag: interrupted; everything answered so far is saved"), text
