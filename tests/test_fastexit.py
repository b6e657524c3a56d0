"""The command's fast exit (cli/fastexit.py): the exit status, everything printed and written, atexit handlers run,
without the interpreter's teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from imagegen import make_images
from imgtag.cli.fastexit import exit_status


def test_exit_status_is_what_sys_exit_gives() -> None:
    assert exit_status(None) == 0
    assert exit_status(0) == 0
    assert exit_status(2) == 2
    assert exit_status(256 + 1) == 1


def run_module(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "IMGTAG_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "imgtag", *args], env=full, capture_output=True, text=True,
                          timeout=180, check=False)


def test_a_run_that_fails_an_image_exits_1_with_its_summary_and_results(tmp_path: Path, fake_anthropic: Any) -> None:
    make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    proc = run_module(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--format", "jsonl"],
                      fake_anthropic.env(), tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "4 files" in proc.stdout + proc.stderr  # the summary reached the pipe before the process ended
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok", "ok"]
    # A second run finds every answer in the store: nothing committed was lost at the exit.
    again = run_module(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--format", "jsonl"],
                       fake_anthropic.env(), tmp_path)
    assert again.returncode == 1
    assert fake_anthropic.stats.messages_requests == 3


def test_a_usage_error_exits_2_with_its_sentence(tmp_path: Path) -> None:
    proc = run_module(["run", str(tmp_path / "nowhere"), "--images-per-request", "0"], {}, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() or proc.stdout.strip()
