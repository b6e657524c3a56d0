"""The ingest's decode pool when a worker dies: every file in flight on that pool sees BrokenProcessPool at once,
and teardown (Ctrl-C, a fatal stop) may close the pool while a decode is still running. Neither may turn into an
AttributeError, and a closed ingest never starts a new pool."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from imagegen import make_images
from imgtag.ingest.pipeline import IngestOptions, Ingestor
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
