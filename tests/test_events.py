"""`imgtag run --events FILE|-` (issue 19.3): real CLI runs against the fake servers, every line checked against
the documented schema (src/imgtag/events/schema.json), and the counts checked against `imgtag status --json`."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
from PIL import Image

from imagegen import hex_colour, make_images, one_sentence, run_cli

SCHEMA = json.loads(files("imgtag.events").joinpath("schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def cli(args: list[str], env: dict[str, str], *, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "IMGTAG_"))} | env
    return subprocess.run([sys.executable, "-m", "imgtag", *args], env=full_env, capture_output=True, text=True,
                          timeout=300, stdin=stdin)


def parse(lines: str) -> list[dict[str, Any]]:
    """Every line one event that the schema accepts; run_started first, run_finished last."""
    events = [json.loads(line) for line in lines.splitlines()]
    for event in events:
        VALIDATOR.validate(event)
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    assert [e["type"] for e in events].count("run_started") == 1
    assert [e["type"] for e in events].count("run_finished") == 1
    return events


def status_json(out: Path, env: dict[str, str]) -> dict[str, Any]:
    done = cli(["status", "--out", str(out), "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def agree_with_status(events: list[dict[str, Any]], status: dict[str, Any], exit_code: int) -> None:
    finished = events[-1]
    assert finished["exit_code"] == exit_code
    assert finished["by_status"] == status["by_status"]
    assert finished["by_error"] == status["by_error"]
    assert finished["files"] == status["files"]
    done = Counter(e["status"] for e in events if e["type"] == "image_done")
    assert dict(done) == {k: v for k, v in status["by_status"].items() if k != "pending"}
    paths = [e["path"] for e in events if e["type"] == "image_done"]
    assert len(paths) == len(set(paths))  # one image_done per file


def photos(folder: Path, n: int) -> dict[str, tuple[int, int, int]]:
    made = make_images(folder, n)
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "tiny.jpg")  # below --min-side: skipped
    shutil.copy(folder / "img_0000.jpg", folder / "copy_of_0.jpg")  # byte-identical: asked once
    return made


def test_sync_events_on_stdout_validate_and_agree_with_status(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    made = photos(tmp_path / "in", 6)
    fake = fake_anthropic_factory(mode_overrides={hex_colour(made["img_0003.jpg"]): "error:400"})
    out = tmp_path / "out"
    done = cli(["run", str(tmp_path / "in"), "--out", str(out), "--events", "-"], fake.env())
    assert done.returncode == 1, done.stderr  # one image failed
    events = parse(done.stdout)  # stdout carries only the events
    started = events[0]
    assert started["mode"] == "sync" and started["target"]["preset"] == "ecommerce"
    assert started["total_files"] == 8
    images = {e["path"]: e for e in events if e["type"] == "image_done"}
    assert images["tiny.jpg"]["status"] == "skipped" and images["tiny.jpg"]["error_type"]
    assert images["img_0003.jpg"]["status"] == "failed" and images["img_0003.jpg"]["error_type"]
    assert images["img_0001.jpg"]["status"] == "ok" and images["img_0001.jpg"]["cost_usd"] > 0
    copies = [images["img_0000.jpg"], images["copy_of_0.jpg"]]
    assert sorted(c["cached"] for c in copies) == [False, True]  # one request for both
    status = status_json(out, fake.env())
    agree_with_status(events, status, 1)
    assert events[-1]["cost_usd"] == status["cost_usd"]
    assert fake.config.api_key not in done.stdout and fake.config.api_key not in done.stderr
    # A rerun asks nothing: every image is told, cached, at no cost.
    fake.stats.reset()
    again = cli(["run", str(tmp_path / "in"), "--out", str(out), "--events", "-"], fake.env())
    rerun = parse(again.stdout)
    assert fake.stats.messages_requests == 0
    redone = [e for e in rerun if e["type"] == "image_done"]
    assert all(e["cached"] and e["cost_usd"] == 0 for e in redone if e["status"] != "skipped")
    agree_with_status(rerun, status_json(out, fake.env()), again.returncode)


def test_batch_events_to_a_file(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    photos(tmp_path / "in", 5)
    fake = fake_anthropic_factory(batch_processing_s=0.3)
    out, log = tmp_path / "out", tmp_path / "events.jsonl"
    done = cli(["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--poll-interval", "0.2",
                "--events", str(log)], fake.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    events = parse(log.read_text(encoding="utf-8"))
    kinds = [e["type"] for e in events]
    assert kinds.index("batch_submitted") < kinds.index("batch_ended")
    (submitted,) = [e for e in events if e["type"] == "batch_submitted"]
    (ended,) = [e for e in events if e["type"] == "batch_ended"]
    assert submitted["images"] == 5 and ended["batch_id"] == submitted["batch_id"] and ended["ok"] == 5
    assert events[0]["mode"] == "batch"
    agree_with_status(events, status_json(out, fake.env()), 0)


def test_detached_batch_then_collecting_run(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    photos(tmp_path / "in", 4)
    fake = fake_anthropic_factory(batch_processing_s=0.2)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--poll-interval", "0.2",
            "--events", "-"]
    first = parse(cli([*args, "--detach"], fake.env()).stdout)
    assert [e["status"] for e in first if e["type"] == "image_done"] == ["skipped"]  # the rest is pending
    assert first[-1]["by_status"]["pending"] == 5
    import time

    time.sleep(0.6)
    done = cli(args, fake.env())
    second = parse(done.stdout)
    agree_with_status(second, status_json(out, fake.env()), done.returncode)
    assert Counter(e["status"] for e in second if e["type"] == "image_done")["ok"] == 5


def test_a_closed_pipe_stops_the_events_not_the_run(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 12)
    fake = fake_anthropic_factory(latency_s=0.05)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))} | fake.env()
    proc = subprocess.Popen([sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out", str(out),
                             "--events", "-", "--concurrency", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # a reader that takes one line and goes away (`| head -1`)
    assert json.loads(first)["type"] == "run_started"
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert stderr.count("events stopped") == 1 and "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert status_json(out, fake.env())["by_status"] == {"ok": 12}  # every paid answer kept
    assert fake.stats.messages_requests == 12


def test_events_file_that_cannot_be_written_is_a_usage_error(tmp_path: Path, monkeypatch: Any) -> None:
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--events",
                            str(tmp_path / "no" / "such" / "events.jsonl")], {"ANTHROPIC_API_KEY": "x"}, monkeypatch)
    assert code == 2
    assert "--events" in one_sentence(output)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_run_still_ends_with_run_finished(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    import signal
    import time

    make_images(tmp_path / "in", 30)
    fake = fake_anthropic_factory(latency_s=0.5)
    out, log = tmp_path / "out", tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))} | fake.env()
    proc = subprocess.Popen([sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out", str(out),
                             "--events", str(log), "--concurrency", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and '"image_done"' not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    events = parse(log.read_text(encoding="utf-8"))
    assert events[-1]["interrupted"] is True and events[-1]["exit_code"] == 143
    assert events[-1]["by_status"].get("ok", 0) >= 1
    ticks = [e["elapsed_s"] for e in events if e["type"] == "progress"]
    assert ticks and all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(ticks))  # at most 1/s


def test_openai_batch_with_resubmissions_tells_each_image_once(tmp_path: Path, fake_openai_factory: Any) -> None:
    make_images(tmp_path / "in", 8)
    # The 1st batch fails as a whole, the 2nd expires half answered, 15% of lines are errors: several batches.
    fake = fake_openai_factory(variant="openai", api_key="sk-test-openai-events", models=("gpt-4.1-mini",),
                               batches={"processing_s": 0.1, "fail_batches": 1, "expire_batches": 1,
                                        "p_item_error": 0.15, "seed": 3})
    out, log = tmp_path / "out", tmp_path / "events.jsonl"
    done = cli(["run", str(tmp_path / "in"), "--out", str(out), "--provider", "openai", "--mode", "batch",
                "--poll-interval", "0.05", "-q", "--events", str(log)], fake.env())
    assert done.returncode == 0, done.stderr
    events = parse(log.read_text(encoding="utf-8"))
    submitted = [e for e in events if e["type"] == "batch_submitted"]
    ended = [e for e in events if e["type"] == "batch_ended"]
    assert len(submitted) >= 3 and {e["batch_id"] for e in ended} == {e["batch_id"] for e in submitted}
    assert sum(e["ok"] for e in ended) == 8 and sum(e["requeued"] for e in ended) > 0
    assert events[0]["target"]["provider"] == "openai"
    agree_with_status(events, status_json(out, fake.env()), 0)
    assert "sk-test-openai-events" not in log.read_text(encoding="utf-8")


def test_rate_limits_are_told(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 6)
    fake = fake_anthropic_factory(p_429=0.4, retry_after_s=0, send_retry_after_ms=True, seed=2)
    out = tmp_path / "out"
    done = cli(["run", str(tmp_path / "in"), "--out", str(out), "--events", "-", "-q"], fake.env())
    assert done.returncode == 0, done.stderr
    events = parse(done.stdout)
    limited = [e for e in events if e["type"] == "rate_limited"]
    assert len(limited) == fake.stats.rate_limited > 0
    agree_with_status(events, status_json(out, fake.env()), 0)


def test_a_full_disk_stops_the_events_not_the_run(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    make_images(tmp_path / "in", 4)
    fake = fake_anthropic_factory()
    out = tmp_path / "out"
    done = cli(["run", str(tmp_path / "in"), "--out", str(out), "--events", "/dev/full", "-q"], fake.env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("events stopped (no space left on device)") == 1, done.stderr
    assert status_json(out, fake.env())["by_status"] == {"ok": 4}


def test_a_handler_that_raises_is_dropped_once_and_the_order_holds() -> None:
    from imgtag.events import Events

    seen: list[dict[str, Any]] = []
    warnings: list[str] = []

    def handler(event: Any) -> None:
        seen.append(dict(event))
        if event["type"] == "image_done":
            raise RuntimeError("the notebook's callback broke")

    events = Events(handler, warn=warnings.append)
    events.prepare(run_id=1)
    events.emit("image_done", path="a.jpg")  # before started(): run_started goes first, without a total
    events.emit("image_done", path="b.jpg")
    events.emit("run_finished", exit_code=0)
    assert [e["type"] for e in seen] == ["run_started", "image_done"]
    assert seen[0] == {"v": 1, "type": "run_started", "run_id": 1, "total_files": None}
    assert warnings == ["imgtag: events stopped (RuntimeError: the notebook's callback broke); the run goes on "
                        "and its results are in the store"]


def test_retry_sends_the_same_events(tmp_path: Path, fake_anthropic_factory: Any) -> None:
    from imagegen import server_error_for

    made = make_images(tmp_path / "in", 4)
    failing = [made["img_0002.jpg"]]
    fake = fake_anthropic_factory(respond=server_error_for(failing))
    out = tmp_path / "out"
    first = cli(["run", str(tmp_path / "in"), "--out", str(out), "-q", "--max-attempts", "1", "--events", "-"],
                fake.env())
    assert first.returncode == 1, first.stderr
    assert [e["error_type"] for e in parse(first.stdout) if e["type"] == "image_done" and e["status"] == "failed"]
    failing.clear()
    done = cli(["retry", "--out", str(out), "-q", "--events", "-"], fake.env())
    assert done.returncode == 0, done.stderr
    events = parse(done.stdout)
    assert events[0]["command"] == "retry"
    asked = [e for e in events if e["type"] == "image_done" and not e["cached"]]
    assert [(e["path"], e["status"]) for e in asked] == [("img_0002.jpg", "ok")]
    assert events[-1]["by_status"] == {"ok": 1}  # the files this retry touched, as its summary line says
    assert status_json(out, fake.env())["by_status"] == {"ok": 4}
