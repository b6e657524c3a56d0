"""discover -> prefilter -> preprocess -> store: everything that happens to a file before a model sees it.

Streams: discovery runs in a thread, decoding in a process pool with a bounded number of files in flight,
and results are yielded as they complete, so memory stays flat at any folder size.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from imgtag.ingest.count import FileCounter
from imgtag.ingest.discover import Discovered, DiscoveryStats, discover, relative_display
from imgtag.ingest.preprocess import ImageReport, PrepareRequest, new_pool, prepare, prepare_batch, run_isolated
from imgtag.ingest.sidecars import LedgerPaths, SidecarRule, forget_sidecar_rows
from imgtag.store import FileRecord, Store, WorkKey
from imgtag.store.db import DB_NAME, RECORD_FIELDS
from imgtag.store.near import StoredNearIndex

# Files decoded per pool task: each task's hop (pickling, the executor's queues and wake-up pipe, its thread handing
# the result to the event loop) cost the main process about 0.25 ms; four files share one (0.39 -> 0.15 ms per file
# on the first-run bench's images).
DECODE_BATCH = 4
# Unchanged files' last_run/seen_run are written together, this many at most per statement (and at the end): a
# rerun writes nothing per file, and `status` during a long rerun still sees the files as it goes.
SEEN_FLUSH = 50_000


@dataclass(frozen=True)
class IngestOptions:
    inputs: Sequence[str]
    request: PrepareRequest              # template; `path` is filled per file
    workers: int | None = None
    near_duplicate_distance: int = 6
    skip_near_duplicates: bool = False
    exclude: Sequence[str] = ()
    stdin: TextIO | None = None
    source: Iterable[Discovered] | None = None   # explicit files (retry) instead of discovering `inputs`
    path_base: str | None = None         # display paths relative to this folder (fileset.py); None: as discovered
    seen_run: int | None = None          # a real run: files it sees join its file set (fileset.py)
    key: WorkKey | None = None           # the target: its jobs' status is read with the files' rows, in bulk


@dataclass
class Ingested:
    """One discovered file after preprocessing (or after the store answered for it)."""

    file_id: int
    display: str
    record: FileRecord
    report: ImageReport | None           # None when an unchanged file was answered from the store
    duplicate_of: int | None = None
    near_duplicate_of: int | None = None
    cached: Any = None                   # the store's row (with `job_status`) when answered from the store


@dataclass
class IngestCounters:
    discovered: int = 0
    from_cache: int = 0
    decoded: int = 0
    discovery_done: bool = False     # every input has been walked: totals (and so an ETA) are final
    stats: DiscoveryStats = field(default_factory=DiscoveryStats)


def _discovered_record(d: Discovered) -> FileRecord:
    assert d.problem is not None
    not_regular = d.problem.startswith("not a regular file")
    return FileRecord(path=d.path, display=d.display, root=d.root, size=d.size, mtime_ns=d.mtime_ns,
                      status="skipped" if not_regular else "failed",
                      reason_code="not_regular" if not_regular else "unreadable", reason=d.problem)


def _record_from_report(d: Discovered, r: ImageReport) -> FileRecord:
    return FileRecord(path=d.path, display=d.display, root=d.root, size=r.bytes if r.bytes else d.size,
                      mtime_ns=d.mtime_ns, status=r.status, reason_code=r.reason_code, reason=r.reason,
                      sha256=r.sha256, format=r.format, width=r.width, height=r.height, phash=r.phash,
                      blur=r.blur, out_width=r.out_width, out_height=r.out_height, visual_tokens=r.visual_tokens)


def _record_from_row(d: Discovered, row: Any) -> FileRecord:
    # known_files puts the record's columns first, in FileRecord's order: one slice instead of 14 lookups by name.
    return FileRecord(d.path, d.display, d.root, *row[:RECORD_FIELDS])


class Ingestor:
    def __init__(self, store: Store, options: IngestOptions, run_id: int | None) -> None:
        self.store = store
        self.options = options
        self.run_id = run_id
        self.counters = IngestCounters()
        self.near = StoredNearIndex(store.db, options.near_duplicate_distance)
        self._seen: list[int] = []  # unchanged files seen and not yet marked (mark_seen)
        self._pool: ProcessPoolExecutor | None = None
        self._groups: set[asyncio.Task[None]] = set()  # decode groups in the pool (run() cancels them at its end)
        self._closed = False
        self._counter: FileCounter | None = None
        # Sidecars beside the images (ours from earlier exports, or other tools') are not images: never rows.
        self._ledger = LedgerPaths((store.out_dir / DB_NAME).resolve())
        self.sidecars = SidecarRule(ours=self._ledger)

    def _new_pool(self) -> ProcessPoolExecutor:
        # Never a plain fork: a forked worker would inherit the store's lock and SQLite descriptors, keep the
        # output folder locked after a kill -9 of the parent, and share a connection across processes.
        return new_pool(self.options.workers or os.cpu_count() or 1)

    async def _prepare(self, req: PrepareRequest) -> ImageReport:
        loop = asyncio.get_running_loop()
        for _ in range(2):
            pool = self._current_pool()
            try:
                return await loop.run_in_executor(pool, prepare, req)
            except BrokenProcessPool:
                # A decoder crashed its worker (a native-library fault on a hostile file). Rebuild the pool
                # and try once more; a second crash means this file is the cause.
                self._retire_broken(pool)
        return ImageReport(path=req.path, status="failed", reason_code="corrupt",
                           reason="corrupt: the decoder crashed on this file", format=None, width=None, height=None,
                           bytes=0, sha256=None, phash=None, blur=None, out_width=None, out_height=None,
                           visual_tokens=None, media_type=None, encoded=None)

    def _retire_broken(self, pool: ProcessPoolExecutor) -> None:
        """A worker of `pool` died. Every decode in flight on that pool lands here: only the first retires it (the
        others must not shut down its replacement); after close() (teardown mid-decode) the files stay pending."""
        if self._closed:
            raise asyncio.CancelledError from None
        if self._pool is pool:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _current_pool(self) -> ProcessPoolExecutor:
        if self._closed:  # a decode still queued at teardown: no new pool may outlive the ingest
            raise asyncio.CancelledError
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    def close(self) -> None:
        self._closed = True
        self._mark_seen()  # a consumer that stopped early (a fatal error, the budget) never ended run()
        if self._counter is not None:
            self._counter.stop()
        self._ledger.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def counted(self) -> int | None:
        return self._counter.total if self._counter is not None else None

    def reserve_rest(self, seconds: float) -> None:
        """After a stop before discovery ended (a bad key, a wrong port): give each input file not reached yet its
        pending row, by the same walk as the count (nothing opened), so results.* list every file still to do.
        Bounded: past `seconds` the rest is left to the count (status and the summary still include it)."""
        if self.options.source is not None or self.counters.discovery_done or "-" in self.options.inputs:
            return
        end = time.monotonic() + seconds
        base, seen = self.options.path_base, self.options.seen_run
        found = discover(self.options.inputs, stats=DiscoveryStats(), exclude=self.options.exclude,
                         sidecars=self.sidecars)
        while time.monotonic() < end:
            chunk = list(itertools.islice(found, 500))
            if not chunk:
                return
            with self.store.db:  # one transaction per chunk: a large folder is thousands of rows
                self.store.db.execute("BEGIN IMMEDIATE")
                for d in chunk:
                    shown = relative_display(d.path, base) if base is not None else d.display
                    self.store.reserve_file(d.path, shown, d.root, seen)

    def finish_count(self, timeout: float) -> int | None:
        """The up-front count, waiting up to `timeout` seconds for the walk (a run that stopped early still
        reports how many files its inputs hold)."""
        if self._counter is not None:
            self._counter.wait(timeout)
        return self.counted

    async def _discovered(self) -> AsyncIterator[list[Discovered]]:
        """Run the (blocking, filesystem-bound) discovery generator in a thread, a chunk at a time."""
        it: Iterator[Discovered] = (
            iter(self.options.source) if self.options.source is not None
            else discover(self.options.inputs, stdin=self.options.stdin, stats=self.counters.stats,
                          exclude=self.options.exclude, sidecars=self.sidecars))

        def chunk() -> list[Discovered]:
            out: list[Discovered] = []
            for item in it:
                out.append(item)
                if len(out) >= 256:
                    break
            return out

        while True:
            items = await asyncio.to_thread(chunk)
            if not items:
                self.counters.discovery_done = True
                return
            yield items

    async def run(self, *, needs_decode: Callable[[Any], bool] | None = None,
                  max_in_flight: int | None = None,
                  decoding: Callable[[], None] | None = None) -> AsyncIterator[Ingested]:
        """Yield every discovered file exactly once, in discovery order (so output is reproducible).

        Decoding runs ahead in the pool by at most `max_in_flight` files; the in-order window is that
        same bound, so memory stays flat. `needs_decode(row)` decides whether an unchanged file already in
        the store must be decoded again (e.g. its image still has to be sent). `decoding()` is called as each
        file goes to the pool (the runner starts the SDK's import at the first: an answer will be needed).
        Files go to the pool DECODE_BATCH at a time (fewer when the window or the chunk ends first)."""
        limit = max_in_flight or 2 * DECODE_BATCH * (self.options.workers or os.cpu_count() or 1)
        if self.options.source is None:
            forget_sidecar_rows(self.store.db, self.sidecars)
        window: deque[asyncio.Future[Ingested]] = deque()
        group: list[tuple[Discovered, Any, asyncio.Future[Ingested]]] = []  # to decode, not sent to the pool yet

        def send() -> None:
            nonlocal group
            if group:
                task = asyncio.ensure_future(self._decode_group(group))
                self._groups.add(task)
                task.add_done_callback(self._groups.discard)
                group = []

        self._counter = FileCounter(self.options.inputs, exclude=self.options.exclude,
                                    source=self.options.source, sidecars=self.sidecars).start()
        base = self.options.path_base
        try:
            async for chunk in self._discovered():
                # One read for the chunk's stored rows (and their jobs), instead of a lookup per file.
                known = self.store.known_files([d.path for d in chunk if d.problem is None], self.options.key)
                if base is not None:
                    chunk = [Discovered(d.path, relative_display(d.path, base), d.root, d.size, d.mtime_ns, d.problem)
                             for d in chunk]
                rows = [None if d.problem is not None else known.get(os.fsencode(d.path)) for d in chunk]
                fresh = [d.problem is None and not (_unchanged(row, d) and not (needs_decode and needs_decode(row)))
                         for d, row in zip(chunk, rows, strict=True)]
                self._reserve([d for d, new in zip(chunk, fresh, strict=True) if new])
                for d, row, new in zip(chunk, rows, fresh, strict=True):
                    self.counters.discovered += 1
                    if d.problem is not None:
                        window.append(_ready(self._save(d, _discovered_record(d), None)))
                        continue
                    if not new:
                        self.counters.from_cache += 1
                        window.append(_ready(self._cached(d, row)))
                    else:
                        if decoding is not None:
                            decoding()
                        future: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
                        group.append((d, row, future))
                        window.append(future)
                        if len(group) >= DECODE_BATCH:
                            send()
                    while window and (window[0].done() or len(window) >= limit):
                        if not window[0].done():
                            send()  # never wait for a file that is not in the pool yet
                        yield await window.popleft()
                send()
            while window:
                yield await window.popleft()
        finally:
            for future in window:
                future.cancel()
            for task in list(self._groups):
                task.cancel()
            self._mark_seen()

    def _reserve(self, files: list[Discovered]) -> None:
        """The pending rows of a chunk's files to decode, in one transaction (one commit, not one per file)."""
        if files:
            with self.store.db:
                self.store.db.execute("BEGIN IMMEDIATE")
                for d in files:
                    self.store.reserve_file(d.path, d.display, d.root, self.options.seen_run)

    def _cached(self, d: Discovered, row: Any) -> Ingested:
        """An unchanged file answered from its stored row. Nothing is written for it now: its id joins the ones
        marked seen together (mark_seen); its duplicate links stand (a changed file relinks its old group)."""
        if row["display"] != d.display or row["root"] != d.root:  # the same folder named another way
            self.store.db.execute("UPDATE files SET display = ?, root = ? WHERE id = ?", (d.display, d.root, row["id"]))
        self._seen.append(row["id"])
        if len(self._seen) >= SEEN_FLUSH:
            self._mark_seen()
        return Ingested(file_id=row["id"], display=d.display, record=_record_from_row(d, row), report=None,
                        duplicate_of=row["duplicate_of"], near_duplicate_of=row["near_duplicate_of"], cached=row)

    def _mark_seen(self) -> None:
        if self._seen:
            self.store.mark_seen(self._seen, self.run_id, self.options.seen_run)
            self._seen = []

    async def _decode_group(self, group: list[tuple[Discovered, Any, asyncio.Future[Ingested]]]) -> None:
        """Decode a group of files in one pool task, then save each and settle its future, in order."""
        try:
            reports = await self._prepare_group([replace(self.options.request, path=d.path) for d, _, _ in group])
            for (d, previous, future), report in zip(group, reports, strict=True):
                self.counters.decoded += 1
                ingested = self._save(d, _record_from_report(d, report), report, previous)
                if not future.done():
                    future.set_result(ingested)
        except asyncio.CancelledError:
            for _, _, future in group:
                future.cancel()
            raise
        except Exception as exc:  # the files' consumer sees it; nobody awaits this task
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)

    async def _prepare_group(self, reqs: list[PrepareRequest]) -> list[ImageReport]:
        if len(reqs) == 1:
            return [await self._prepare(reqs[0])]
        pool = self._current_pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, prepare_batch, reqs)
        except BrokenProcessPool:
            self._retire_broken(pool)
        # A worker died on one of these files (or on another group's: they all break together). Each goes again
        # alone, one after the other in a private one-worker pool, so only a file that kills the decoder is blamed.
        return await asyncio.to_thread(lambda: list(run_isolated(reqs)))

    def _save(self, d: Discovered, record: FileRecord, report: ImageReport | None, previous: Any = None) -> Ingested:
        """Write a file's row after decoding (or a discovery problem), with its duplicate links. `previous` is its
        row from before (a changed file), whose old content group and index entry are put right. One transaction:
        the row and its links change together (a reader never sees one without the other), and one commit writes
        each page they touch once instead of once per statement (four or five commits per file before)."""
        with self.store.db:
            self.store.db.execute("BEGIN IMMEDIATE")
            return self._write(d, record, report, previous)

    def _write(self, d: Discovered, record: FileRecord, report: ImageReport | None, previous: Any) -> Ingested:
        file_id = self.store.upsert_file(record, self.run_id, self.options.seen_run)
        duplicate_of = near_of = None
        if record.status == "ok" and record.sha256:
            original = self.store.link_duplicates(record.sha256)
            duplicate_of = original if original != file_id else None
            if duplicate_of is None and record.phash:
                near_of = self.near.add(file_id, record.phash)
            elif previous is not None:
                self.near.forget(file_id)  # now a byte copy: never a near-duplicate's original
            if near_of is not None and self.options.skip_near_duplicates:
                record = replace(record, status="skipped", reason_code="near_duplicate",
                                 reason=f"near-duplicate of {self.store.display_of(near_of)} (--skip-near-duplicates)")
                self.store.upsert_file(record, self.run_id, self.options.seen_run)
                self.store.relink_duplicates(record.sha256)  # it may have been its copies' original
            self.store.set_near_duplicate(file_id, near_of)
        elif previous is not None:
            self.near.forget(file_id)
        old_sha = previous["sha256"] if previous is not None and previous["status"] == "ok" else None
        if old_sha and (old_sha != record.sha256 or record.status != "ok"):
            self.store.relink_duplicates(old_sha)  # its old copies point to the earliest file left with it
        return Ingested(file_id=file_id, display=d.display, record=record, report=report,
                        duplicate_of=duplicate_of, near_duplicate_of=near_of)


def _unchanged(row: Any, d: Discovered) -> bool:
    """The stored row answers for this file: examined before (not a placeholder) and the same size and mtime."""
    return (row is not None and row["reason_code"] != "pending" and d.size is not None
            and row["size"] == d.size and row["mtime_ns"] == d.mtime_ns)


def _ready(value: Ingested) -> asyncio.Future[Ingested]:
    future: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
