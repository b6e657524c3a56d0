"""The ingest's decode pool when a worker dies: every file in flight on that pool sees BrokenProcessPool at once,
and teardown (Ctrl-C, a fatal stop) may close the pool while a decode is still running. Neither may turn into an
AttributeError, and a closed ingest never starts a new pool."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images
from imgtag.ingest.pipeline import DECODE_BATCH, IngestOptions, Ingestor
from imgtag.ingest.preprocess import ImageReport, PrepareRequest
from imgtag.store import Store


class _KillsWorker(PrepareRequest):
    """Unpickling this in a worker ends the process abruptly: a stand-in for a decoder segfault."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (70,))


def _ingestor(tmp_path: Path) -> tuple[Store, Ingestor]:
    store = Store(tmp_path / "out")
    options = IngestOptions(inputs=[str(tmp_path / "in")], request=PrepareRequest("", encode=False), workers=1)
    return store, Ingestor(store, options, run_id=None)


def test_files_in_flight_when_a_worker_dies_each_get_a_report(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    store, ingestor = _ingestor(tmp_path)

    async def both() -> list[ImageReport]:
        # One worker: the killer runs, the good file waits in the same pool; both see the pool break.
        return await asyncio.gather(ingestor._prepare(_KillsWorker(str(tmp_path / "in" / "img_0000.jpg"))),
                                    ingestor._prepare(PrepareRequest(str(tmp_path / "in" / "img_0000.jpg"),
                                                                     encode=False)))

    try:
        killed, other = asyncio.run(both())
    finally:
        ingestor.close()
        store.close()
    assert (killed.status, killed.reason_code) == ("failed", "corrupt")
    assert other.path.endswith("img_0000.jpg") and other.status in ("ok", "failed"), other


def test_closing_while_a_decode_breaks_the_pool_cancels_it(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    store, ingestor = _ingestor(tmp_path)

    async def close_mid_decode() -> BaseException | ImageReport:
        task = asyncio.ensure_future(ingestor._prepare(_KillsWorker(str(tmp_path / "in" / "img_0000.jpg"))))
        await asyncio.sleep(0)  # the file is in the pool now
        ingestor.close()        # teardown: waits for the pool, which the dying worker has broken
        try:
            return await task
        except BaseException as exc:  # what it raises is the point
            return exc

    try:
        outcome = asyncio.run(close_mid_decode())
    finally:
        store.close()
    # The file is left pending (its row says "not examined yet"), not blamed as corrupt and not an AttributeError.
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
    assert ingestor._pool is None  # no new pool started after close


def test_files_go_to_the_pool_a_group_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each pool task costs the main process a hop (pickling, the executor's queues, a thread waking the loop):
    # DECODE_BATCH files share one.
    make_images(tmp_path / "in", 12)
    store, ingestor = _ingestor(tmp_path)
    submitted: list[object] = []
    real_submit = ProcessPoolExecutor.submit

    def counting(self: ProcessPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        submitted.append(fn)
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", counting)

    async def ingest() -> list[str]:
        return [item.record.status async for item in ingestor.run()]

    try:
        statuses = asyncio.run(ingest())
    finally:
        ingestor.close()
        store.close()
    assert statuses == ["ok"] * 12
    assert len(submitted) == 12 // DECODE_BATCH


def test_a_group_whose_worker_dies_blames_only_the_file_that_killed_it(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    store, ingestor = _ingestor(tmp_path)
    good = str(tmp_path / "in" / "img_0000.jpg")
    try:
        reports = asyncio.run(ingestor._prepare_group([PrepareRequest(good, encode=False), _KillsWorker(good),
                                                       PrepareRequest(good, encode=False)]))
    finally:
        ingestor.close()
        store.close()
    assert [(r.status, r.reason_code) for r in reports] == [("ok", None), ("failed", "corrupt"), ("ok", None)]
