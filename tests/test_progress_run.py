"""The progress a run reports, end to end: a real total from the start, and a resume told apart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from imagegen import make_images, run_cli
from imgtag.app.runner import Run
from imgtag.config.runconfig import RunConfig
from imgtag.export.targets import target_meta
from imgtag.providers import create_provider, resolve_target
from imgtag.store import Store
from inprocess import wired_run


def test_total_is_known_long_before_discovery_reaches_the_end(tmp_path: Path, fake_anthropic_factory: Any,
                                                              monkeypatch: Any) -> None:
    # Discovery is lazy (it advances as decoding does, 256 paths at a time), so without an up-front count
    # a 300-file run shows "256+" and no ETA until its very end.
    make_images(tmp_path / "in", 300, size=(64, 64))
    fake = fake_anthropic_factory(latency_s=0.3)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    cfg = RunConfig(inputs=[str(tmp_path / "in")], out=tmp_path / "out", progress=False, min_side=0)
    seen: list[Any] = []

    async def go() -> None:
        async with wired_run(cfg) as run:
            task = asyncio.create_task(run.execute())
            deadline = time.monotonic() + 60
            while fake.stats.messages_requests < 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            seen.append(run.snapshot())
            await task

    asyncio.run(go())
    snap = seen[0]
    assert snap.finished < 300 and not snap.discovery_done  # early in the run ...
    assert snap.total == 300  # ... and yet the total is exact


def test_rerun_with_new_files_reports_new_and_earlier_work_and_cost_to_date(tmp_path: Path,
                                                                            fake_anthropic_factory: Any,
                                                                            monkeypatch: Any) -> None:
    fake = fake_anthropic_factory()
    make_images(tmp_path / "in", 6)
    args = ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-q"]
    code, first = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, first
    assert "already done" not in first
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (240, 220), (i * 90 + 30, 200, 10)).save(tmp_path / "in" / f"new_{i}.jpg")
    code, second = run_cli(args, fake.env(), monkeypatch)
    assert code == 0, second
    assert "6 of 8 files already done by earlier runs" in second, second
    assert "this run," in second and "to date for this preset and model" in second


def test_in_flight_is_what_the_server_is_serving(tmp_path: Path, fake_openai_factory: Any, monkeypatch: Any) -> None:
    # Issue 17.15: against a local server the line said "in flight 28" while the server saw at most 8. Requests
    # that wait for the provider's own (adaptive) concurrency limit are not in flight: only those sent and not
    # yet answered are. Checked as invariants that hold at every moment, however busy the machine: each reading
    # of the line is at most the most the limit has let out so far (read in the same event-loop turn), and the
    # server never served more at once than that either. (Comparing the line with the server's peak raced: a
    # request on its way to or back from the server is in flight for us and not yet, or no longer, for it.)
    make_images(tmp_path / "in", 60, size=(64, 64))
    fake = fake_openai_factory(latency_s=0.4)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = RunConfig(inputs=[str(tmp_path / "in")], out=tmp_path / "out", provider="openai", model="glm-4v-9b",
                    progress=False, min_side=0, provider_settings={"base_url": fake.base_url})
    target = resolve_target(cfg)
    shown: list[int] = []
    let_out: list[int] = []  # the adaptive limit's peak so far, read with each sample
    peak_limit = 0

    async def go() -> None:
        nonlocal peak_limit
        provider = create_provider("openai", base_url=fake.base_url, timeout=30.0)
        try:
            with Store(cfg.out) as store:
                store.set_meta("target", target_meta(cfg, target))
                run = Run(cfg, store, target, provider)
                task = asyncio.create_task(run.execute())
                while not task.done():
                    shown.append(run.snapshot().in_flight)
                    let_out.append(provider.limiter.peak_limit)
                    await asyncio.sleep(0.01)
                outcome = await task
                assert outcome.exit_code == 0, outcome.message
            peak_limit = provider.limiter.peak_limit
        finally:
            await provider.aclose()

    asyncio.run(go())
    assert fake.stats.peak_in_flight >= 2  # several at once, so the comparison says something
    assert max(shown) >= 2
    over = [(n, limit) for n, limit in zip(shown, let_out, strict=True) if n > limit]
    assert not over, over[:5]  # never more in flight than the limit let out
    assert fake.stats.peak_in_flight <= peak_limit, (fake.stats.peak_in_flight, peak_limit)


def test_copies_answered_with_their_image_count_as_ok(tmp_path: Path, fake_anthropic_factory: Any,
                                                      monkeypatch: Any) -> None:
    """The last progress line said '40/40 files | ok 31 | failed 3 | skipped 5' where the summary said ok 32: a
    byte-identical copy shares its image's answer (one request) and is this run's work, but was counted in the
    files only, not in ok."""
    folder = tmp_path / "in"
    make_images(folder, 4)
    first = sorted(folder.iterdir())[0]
    (folder / "a_copy.jpg").write_bytes(first.read_bytes())  # walked beside its image
    (folder / "zz").mkdir()
    (folder / "zz" / "late_copy.jpg").write_bytes(first.read_bytes())  # walked after its image was answered
    fake = fake_anthropic_factory(latency_s=0.2)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    cfg = RunConfig(inputs=[str(folder)], out=tmp_path / "out", progress=False, min_side=0)
    seen: list[Any] = []

    async def go() -> None:
        async with wired_run(cfg) as run:
            await run.execute()
            seen.append(run.snapshot())

    asyncio.run(go())
    snap = seen[0]
    assert fake.stats.messages_requests == 4
    assert (snap.finished, snap.ok, snap.failed, snap.skipped, snap.done_before) == (6, 6, 0, 0, 0), snap


def test_copies_count_as_ok_when_a_resumed_batch_run_collects_their_image(tmp_path: Path, fake_anthropic_factory: Any,
                                                                         monkeypatch: Any) -> None:
    """Ctrl-C in batch mode, then the same command: the line ended 'ok 31 | ... collected 31' where the summary said
    ok 32; the copy of a collected image is this run's too."""
    folder = tmp_path / "in"
    make_images(folder, 3)
    first = sorted(folder.iterdir())[0]
    (folder / "zz").mkdir()
    (folder / "zz" / "late_copy.jpg").write_bytes(first.read_bytes())
    fake = fake_anthropic_factory(batch_processing_s=0.5)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(folder), "--out", str(out), "--mode", "batch", "--detach", "-q"], fake.env(),
                           monkeypatch)
    assert code == 0, output
    time.sleep(0.6)
    cfg = RunConfig(inputs=[str(folder)], out=out, progress=False, min_side=0, mode="batch", poll_interval=0.05)
    seen: list[Any] = []

    async def go() -> None:
        async with wired_run(cfg, record_target=False) as run:  # the CLI's run recorded it
            await run.execute()
            seen.append(run.snapshot())

    asyncio.run(go())
    snap = seen[0]
    assert fake.stats.batches_created == 1
    assert (snap.finished, snap.ok, snap.failed, snap.done_before) == (4, 4, 0, 0), snap
