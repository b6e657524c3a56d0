"""Sync mode, --images-per-request K: a pack of K images is the engine's unit of work. One pacer permit, one
concurrency slot and one request per pack, full packs of K except the last of the run; every image is still
judged, retried, billed and stored on its own. Timing is checked on a virtual clock (tests/serversim.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import virtualtime
from imagegen import close_to, make_images, read_jsonl, run_cli
from imgtag.app.progress import Snapshot
from imgtag.config.runconfig import RunConfig
from imgtag.presets import load_preset
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.costs import cost_usd
from imgtag.pricing.estimate import RequestEstimate, pack_estimate
from imgtag.request.gather import gather_packs
from inprocess import wired_run
from serversim import SimProvider, TokenBucket, run_engine
from virtualtime import START


def sizes(fake: Any) -> list[int]:
    """Images per /v1/messages request the fake answered, in arrival order."""
    return [len(e["image_keys"]) for e in fake.seen]


def test_a_sync_run_sends_full_packs_each_answer_on_its_own_image(tmp_path: Path, recording_anthropic: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 20)
    fake = recording_anthropic(latency_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-sonnet-4-6",
                            "--images-per-request", "8", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    # ceil(20 / 8) requests: the cache warm-up is the first full pack, alone; only the run's last pack is short.
    # The two packs after the warm-up go together, so the server may see them in either order: each pack is
    # checked by the images it holds (K at a time in discovery order), not by when it arrived.
    names = sorted(made)

    def held(entry: dict[str, Any]) -> list[str]:
        return sorted(n for n in names if any(close_to(k, made[n]) for k in entry["image_keys"]))

    assert held(fake.seen[0]) == names[:8]
    assert sorted(held(e) for e in fake.seen) == [names[:8], names[8:16], names[16:]], sizes(fake)
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 20 and all(r["status"] == "ok" for r in rows)
    for r in rows:  # identity: the colour each answer names is its own file's colour
        assert close_to(r["fields"]["color"], made[Path(r["path"]).name]), r
    keys = [k for e in fake.seen for k in e["image_keys"]]
    assert len(keys) == len(set(keys)) == 20  # every image asked once
    # One cache write (the warm-up pack), read by the two packs after it.
    assert fake.stats.cache_read_input_tokens == 2 * fake.stats.cache_creation_input_tokens > 0
    # Each image is billed its share of its pack: the stored usage adds up to what the fake billed.
    assert sum(r["usage"]["input_tokens"] for r in rows) == fake.stats.input_tokens
    assert sum(r["usage"]["output_tokens"] for r in rows) == fake.stats.output_tokens


def test_a_packed_run_is_paced_per_request_not_per_image() -> None:
    # 320 images in packs of 8 against 300 requests/min from a 1-second bucket, 3 s latency: 40 requests. The
    # fastest schedule the server allows after the warm-up (one request alone, 3 s): 5 at once, then one every
    # 0.2 s, plus one latency: 3 + 7 + 3 = 13 s. Paced per image (a request's budget spent on each image of a
    # pack) it would send one pack every 1.6 s and take over a minute.
    sim = SimProvider(TokenBucket(300, 1.0, START), name="anthropic", latency_s=3.0)
    result = run_engine(sim, 320, per_request=8)
    t = result.traffic
    assert t.sizes == [8] * 40 and len(t.sent) == 40
    assert t.rejected == []
    assert set(t.answered.values()) == {1} and len(t.answered) == 320
    assert set(result.recorder.settled.values()) == {"ok"} and len(result.recorder.settled) == 320
    assert 13.0 <= result.ended - START <= 13.5, result.ended - START
    # The very schedule of 40 single-image requests: the pacer spends one request's budget on a pack.
    single = run_engine(SimProvider(TokenBucket(300, 1.0, START), name="anthropic", latency_s=3.0), 40)
    assert t.sent == single.traffic.sent


def test_a_pack_takes_one_concurrency_slot() -> None:
    # No rate limit, concurrency 2: 64 images at K=8 go as 8 requests, at most 2 at a time (not 2 images).
    sim = SimProvider(TokenBucket(60_000, 60.0, START), name="openai", latency_s=1.0)
    result = run_engine(sim, 64, per_request=8, concurrency=2)
    assert result.traffic.sizes == [8] * 8
    assert result.traffic.peak_in_flight == 2
    assert 4.0 <= result.ended - START <= 4.5  # 8 requests, 2 at a time, 1 s each


def test_a_bad_image_in_a_pack_fails_alone(tmp_path: Path, recording_anthropic: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_images(tmp_path / "in", 10)
    bad = made["img_0005.jpg"]

    def reject_bad(ctx: dict[str, Any]) -> dict[str, Any] | None:
        # The API refuses any request holding this image (as it would a broken one).
        if any(close_to(k, bad) for k in ctx["image_keys"]):
            return {"status": 400, "message": "messages.0.content: Could not process image"}
        return None

    fake = recording_anthropic(respond=reject_bad)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--model", "claude-sonnet-4-6",
                            "--images-per-request", "4", "-q"], fake.env(), monkeypatch)
    assert code == 1, output
    rows = {Path(r["path"]).name: r for r in read_jsonl(out / "results.jsonl")}
    assert [n for n, r in rows.items() if r["status"] != "ok"] == ["img_0005.jpg"]
    assert "Could not process image" in rows["img_0005.jpg"]["error"]["message"]
    for name, r in rows.items():
        if name != "img_0005.jpg":
            assert close_to(r["fields"]["color"], made[name])
    # Packs of 4, 4 and 2; the refused pack (images 4-7) is asked again one image per request.
    assert sorted(sizes(fake)) == [1, 1, 1, 1, 2, 4, 4], sizes(fake)


def test_the_budget_reserves_for_the_whole_pack_before_sending() -> None:
    info = catalogue().get(catalogue().default_model)
    alone = RequestEstimate(input_tokens=1000, output_tokens=200)  # serversim's estimate of one image
    per_image = cost_usd(info.prices, alone.usage())
    per_pack = cost_usd(info.prices, pack_estimate([alone] * 4, load_preset("keywords"), info).usage())
    # A pack carries the prompt once: it reserves less than four images asked alone.
    assert per_pack < 4 * per_image
    sim = SimProvider(TokenBucket(6000, 6.0, START), name="anthropic", latency_s=0.5)
    # 1.5 packs' worth: the first pack of 4 fits, the second would exceed the budget while the first is out.
    result = run_engine(sim, 20, per_request=4, budget_usd=1.5 * per_pack)
    assert result.traffic.sizes == [4]
    assert result.engine is not None and result.engine.budget_hit
    assert result.engine.stats.budget_stopped == 16 and result.engine.stats.ok == 4
    assert result.engine.stats.spent_usd <= 1.5 * per_pack
    # Less than one pack's worth: nothing is sent (one image per request would have sent some).
    sim = SimProvider(TokenBucket(6000, 6.0, START), name="anthropic", latency_s=0.5)
    result = run_engine(sim, 20, per_request=4, budget_usd=0.9 * per_pack)
    assert result.traffic.sent == [] and result.engine is not None and result.engine.stats.budget_stopped == 20
    # One pack's worth, though less than four single images': the pack goes (the prompt is not reserved 4x).
    sim = SimProvider(TokenBucket(6000, 6.0, START), name="anthropic", latency_s=0.5)
    result = run_engine(sim, 4, per_request=4, budget_usd=1.01 * per_pack)
    assert 1.01 * per_pack < 4 * per_image and result.traffic.sizes == [4]


def test_packs_are_full_unless_the_input_stalls_or_ends() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(11):  # 11 items at once, a stall of 10 s (a slow decode), 3 more, the end
            yield i
        await asyncio.sleep(10.0)
        for i in range(11, 14):
            await asyncio.sleep(0.5)  # slower than a burst, faster than a stall: the pack waits for them
            yield i

    async def main() -> list[tuple[float, list[int]]]:
        loop = asyncio.get_running_loop()
        return [(loop.time() - START, pack) async for pack in gather_packs(source(), 4, stall_s=2.0)]

    packs = virtualtime.run(main)
    assert [p for _, p in packs] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10], [11, 12, 13]]
    # The short pack left when the input had been quiet for stall_s; the last one when the input ended.
    assert [round(t, 3) for t, _ in packs] == [0.0, 0.0, 2.0, 11.5]


@pytest.fixture
def sigint_default() -> Iterator[None]:
    """Children inherit an ignored SIGINT, and an earlier in-process test may have left this process ignoring it
    (a decode worker's setup run in-process does: ingest/lifeline.ignore_interrupts); a terminal's child gets it
    at its default, so the child here does too."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_run_then_rerun_asks_nothing_twice(tmp_path: Path, fake_anthropic_factory: Any,
                                                      sigint_default: None) -> None:
    made = make_images(tmp_path / "in", 24)
    answered: Counter[str] = Counter()  # per image: what the server was asked (and answers; a pack asks 4)
    lock = threading.Lock()
    hold = threading.Event()  # the third request on is held until the interrupt: the run is mid-way, surely

    def count(ctx: dict[str, Any]) -> None:
        with lock:
            answered.update(ctx["image_keys"])
        if ctx["seq"] >= 3:
            hold.wait(60)

    def total() -> int:
        with lock:
            return sum(answered.values())

    fake = fake_anthropic_factory(latency_s=0.1, respond=count)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "imgtag", "run", str(tmp_path / "in"), "--out", str(out), "-q",
            "--model", "claude-sonnet-4-6", "--images-per-request", "4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")} | fake.env()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while total() < 12:  # the warm-up pack, the next, and one held
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it: a graceful stop
        hold.set()  # the packs on the wire are answered while it waits for them
        _, err = proc.communicate(timeout=30)
    finally:
        hold.set()
    assert proc.returncode == 130, err.decode()
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("imgtag: interrupted;") and b"Traceback" not in err, err.decode()
    assert lines[:-1] in ([], [lines[0]]) and all(line.startswith("Stopping: ") for line in lines[:-1]), lines
    fake.wait_idle()
    db = sqlite3.connect(out / "imgtag.db")
    stored = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'ok'").fetchone()[0]
    db.close()
    assert 4 <= stored < 24
    in_flight = total() - stored  # asked, never stored: asked again by the rerun, and only those
    rerun = subprocess.run(args, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
    assert all(close_to(r["fields"]["color"], made[Path(r["path"]).name]) for r in rows)
    assert sum(n - 1 for n in answered.values()) <= in_flight and total() <= 24 + in_flight


def test_progress_counts_an_image_finished_only_once_it_is_settled(tmp_path: Path, fake_anthropic_factory: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # One request at a time, the second held on the server: pack 1 (the warm-up) is settled, pack 2 is in
    # flight, pack 3 is gathered and waits for the slot. Only pack 1's images are finished.
    make_images(tmp_path / "in", 20)
    hold = threading.Event()

    def held(ctx: dict[str, Any]) -> None:
        if ctx["seq"] >= 2:
            hold.wait(60)

    fake = fake_anthropic_factory(respond=held)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    cfg = RunConfig(inputs=[str(tmp_path / "in")], out=tmp_path / "out", progress=False, model="claude-sonnet-4-6",
                    images_per_request=8, concurrency=1)
    seen: list[Snapshot] = []

    async def go() -> None:
        async with wired_run(cfg) as run:
            try:
                task = asyncio.create_task(run.execute())
                deadline = time.monotonic() + 60
                while fake.stats.messages_requests < 2 or run.finished < 20:
                    assert time.monotonic() < deadline and not task.done(), "the run ended or stalled"
                    await asyncio.sleep(0.02)
                seen.append(run.snapshot())
                hold.set()
                await task
                seen.append(run.snapshot())
            finally:
                hold.set()  # the held answers go before the provider closes

    asyncio.run(go())
    during, after = seen
    # In flight counts requests on the wire (issue 17.15), as the pace beside it ("up to N requests at a time"):
    # pack 2 is one request of 8 images.
    assert (during.ok, during.in_flight, during.finished) == (8, 1, 8)
    assert (after.ok, after.in_flight, after.finished) == (20, 0, 20)
