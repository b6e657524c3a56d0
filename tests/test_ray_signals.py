"""--engine ray stopped by a signal to its whole process group, as a terminal's Ctrl-C, `timeout`, `docker stop` or a
service manager send it: exit 130 or 143 with one sentence, no traceback, nothing of Ray left running once imgtag
has exited, and the same command then does what is still to do, asking nothing already answered.

Each imgtag here is started in a session of its own with a marker in its environment; every process of the local
Ray cluster it starts inherits that environment, which is how the test finds them (and only them: other Ray
clusters on the machine are not this test's)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images, read_jsonl
from proctree import needs_proc, reap, wait_gone, with_env
from test_lifecycle import Cli, one_sentence, screen, wait_for

pytest.importorskip("ray")  # in dev: CI runs these; a plain install without the extra cannot
pytestmark = [pytest.mark.ray, needs_proc]

MARKER = "IMGTAG_TEST_RAY_SIGNALS"
INTERRUPTED = "imgtag: interrupted; everything answered so far is saved — run the same command to continue"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ok_colours(out: Path) -> set[str]:
    if not (out / "imgtag.db").exists():
        return set()
    db = sqlite3.connect(out / "imgtag.db")
    try:
        return {json.loads(f)["color"] for (f,) in db.execute("SELECT fields FROM jobs WHERE status = 'ok'")}
    finally:
        db.close()


def _stopped(cli: Cli, marker: str, sig: signal.Signals, expected: int) -> None:
    """Send `sig` to imgtag's process group; it exits `expected` with the one sentence and nothing of Ray runs."""
    os.killpg(cli.proc.pid, sig)
    try:
        code = cli.proc.wait(60)
    finally:
        left = with_env(MARKER, marker)
        reap(left)
        reap({cli.proc.pid})
    # Processes SIGKILLed a moment before the exit may still be on their way out; nothing may keep running.
    names = {pid: _cmdline(pid)[:80] for pid in wait_gone(left, 1.0)}
    assert not names, f"Ray processes of this run still running after imgtag exited on {sig.name}: {names}"
    text = cli.output()
    assert code == expected, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    lines = screen(text)
    start = max(i for i, line in enumerate(lines) if line.startswith("imgtag: "))
    assert one_sentence(lines[start:]) == INTERRUPTED, text


def test_sigterm_while_ray_starts_then_ctrl_c_mid_run_then_the_rest(tmp_path: Path,
                                                                    fake_anthropic_factory: Any) -> None:
    n = 24
    make_images(tmp_path / "in", n)
    fake = fake_anthropic_factory(latency_s=0.4)
    out = tmp_path / "out"
    # Two requests at a time: the images take about 5 s to ask, so the Ctrl-C surely comes mid-run.
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--engine", "ray", "--workers", "2", "--concurrency", "2"]

    # 1. SIGTERM to the group while the local cluster starts (its GCS is up, the rest is coming).
    marker = uuid.uuid4().hex
    cli = Cli(args, {**fake.env(), MARKER: marker}, tty=True)
    wait_for(lambda: any(b"gcs_server" in _cmdline(p) for p in with_env(MARKER, marker)), cli, timeout=120)
    _stopped(cli, marker, signal.SIGTERM, 143)
    assert fake.stats.messages_requests == 0

    # 2. The same command, Ctrl-C at the terminal once some answers came back.
    marker = uuid.uuid4().hex
    cli = Cli(args, {**fake.env(), MARKER: marker}, tty=True)
    wait_for(lambda: sum(fake.stats.answered_by_key.values()) >= 3, cli, timeout=180)
    _stopped(cli, marker, signal.SIGINT, 130)
    asked_before = sum(fake.stats.answered_by_key.values())
    assert asked_before < n, "the Ctrl-C came after the run; the test proves nothing"

    # 3. The same command does the rest: what the store held answered is never asked again.
    answered = _ok_colours(out)
    counts = dict(fake.stats.answered_by_key)
    marker = uuid.uuid4().hex
    cli = Cli(args, {**fake.env(), MARKER: marker})
    try:
        assert cli.proc.wait(240) == 0, cli.output()
    finally:
        left = with_env(MARKER, marker)
        reap(left)
    assert not wait_gone(left, 1.0), "Ray processes still running after imgtag finished"
    asked_again = {key for key, count in fake.stats.answered_by_key.items() if count > counts.get(key, 0)}
    assert not asked_again & answered, sorted(asked_again & answered)
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == n and {r["status"] for r in rows} == {"ok"}
