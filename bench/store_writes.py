"""The store's write path per image, without decoding or asking anything: what the summaries `imgtag status` reads
(migration _v17_status_tallies, kept by triggers) add to a first run's writes.

    python bench/store_writes.py [--images 20000] [--prefill 100000] [--rounds 3]

Per image, the writes a first run makes, each in its own transaction as the pipeline and the engine commit them: the
row reserved at discovery, the decoded file's row and its duplicate links, its job, then the answer (an attempt that
settles the job; 1 in 50 failed, 1 in 100 an exact copy of the image before it, which shares its job). Into a store
already holding `--prefill` synthetic images (tests/synthstore.py), so the indexes have a real depth. CPU time of this
process (getrusage), best of `--rounds`, in µs per image. Compare two checkouts by running each one's copy with its
own `src` first on the path (PYTHONPATH=/path/to/other/src python bench/store_writes.py).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "src"))  # after PYTHONPATH: another checkout's src may come first

from imgtag.pricing.costs import Usage  # noqa: E402
from imgtag.store import FileRecord, Store, WorkKey  # noqa: E402
from imgtag.store.db import now_iso  # noqa: E402
from synthstore import MODEL, PROVIDER, fill  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def first_run(store: Store, key: WorkKey, n: int, start: int) -> float:
    """The writes of `n` new images; returns the CPU seconds they took."""
    run_id = store.start_run("run")
    began = cpu()
    for i in range(start, start + n):
        path = f"/bench/new/img_{i:07d}.jpg"
        copy = i % 100 == 99
        sha = hashlib.sha256(f"new {i - 1 if copy else i}".encode()).hexdigest()
        with store.db:
            store.db.execute("BEGIN IMMEDIATE")
            store.reserve_file(path, path[7:], "/bench", run_id)
        with store.db:
            store.db.execute("BEGIN IMMEDIATE")
            file_id = store.upsert_file(FileRecord(path, path[7:], "/bench", 100_000 + i, i, "ok", sha256=sha,
                                                   format="jpeg", width=1600, height=1200, phash=f"{i:016x}",
                                                   out_width=896, out_height=672, visual_tokens=768), run_id, run_id)
            store.link_duplicates(sha)
            job = store.job_for(sha, key, file_id)
        if copy:
            continue
        failed = i % 50 == 7
        store.record_attempt(job.id, run_id, started_at=now_iso(), outcome="failed" if failed else "ok", mode="sync",
                             http_status=200, request_id=f"req_new_{i:012d}",
                             usage=Usage(input_tokens=1900, output_tokens=120, cache_read_input_tokens=1500),
                             cost=0.0012, commit_job={"status": "failed" if failed else "ok", "mode": "sync",
                                                      "fields": None if failed else {"tags": ["a", "b"]},
                                                      "error_type": "invalid_answer" if failed else None})
    spent = cpu() - began
    store.finish_run(run_id, 0)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="imgtag-writes-bench-"))
    try:
        template = folder / "template"
        meta = fill(template, args.prefill, root="/photos")
        key = WorkKey(meta["preset_version"], PROVIDER, MODEL)
        best = float("inf")
        for r in range(args.rounds):
            out = folder / f"round{r}"
            shutil.copytree(template, out)
            with Store(out) as store:
                best = min(best, first_run(store, key, args.images, args.prefill))
            shutil.rmtree(out)
        import imgtag
        print(f"{Path(imgtag.__file__).parents[1]}: {args.images} images into a store of {args.prefill}: "
              f"{best:.2f} s CPU, {best / args.images * 1e6:.0f} µs per image (best of {args.rounds})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
