"""Rerun of a finished, unchanged folder (issue 20 item 1): cost per file beyond start-up, against a baseline.

    .venv/bin/python bench/rerun.py                          # 10,000 small distinct JPEGs, baseline 91e5525
    .venv/bin/python bench/rerun.py --images 2000 --baseline 91e5525 --reruns 3
    .venv/bin/python bench/rerun.py --images 100000 --synthetic --reruns 1   # a store at scale, made directly
    .venv/bin/python bench/rerun.py --images 1000000 --synthetic --reruns 1 --baseline none   # this checkout only

One first run (the baseline's code, zero-latency fake Anthropic server, `--format csv,jsonl`) fills a store; the
output folder is copied, so both versions rerun the very same store: the baseline (a commit checked out in a
temporary git worktree, run from its src/) on one copy, this checkout on the other. Each version then reruns the
folder `--reruns` times, interleaved, so both see the same machine load; nothing is asked (the fake counts
requests, and the bench fails if any is made). The first rerun of this checkout applies its store migrations;
the figures are the best of the later reruns.

Printed per version: wall and CPU seconds (user + system of the imgtag process and anything it waited for), peak
RSS of the process, and µs per file beyond start-up, where start-up is the same version's rerun of a one-file
folder (so `total = start-up + files x µs/file`). The target is <= 60 µs per file beyond 1 s. The ratio
baseline/current is of the per-file CPU time. The machine may be shared: the load average is printed.

--synthetic: a first run of `--images` files would take hours, so a real first run answers 20 JPEGs and the store
is then grown to `--images` files by copying their rows (each with its own path, size, mtime, SHA-256 and
perceptual hash, and its own answered job); the files on disk are small distinct files of those sizes and mtimes
(a rerun never opens an unchanged file, so they need not be images).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig  # noqa: E402

DEFAULT_BASELINE = "91e5525"  # main before the rerun work of issue 20 item 1


def make_jpegs(folder: Path, n: int, edge: int) -> None:
    """n small distinct JPEGs: random 8x8 colour fields blown up smoothly (a few KB each, and no two share
    content or, in practice, a perceptual hash)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seed = Image.frombytes("RGB", (8, 8), os.urandom(8 * 8 * 3))
        seed.resize((edge, edge), Image.Resampling.BILINEAR).save(folder / f"img_{i:07d}.jpg", quality=80)


def grow_store(out: Path, folder: Path, n: int) -> None:
    """Make `folder` hold n small distinct files and the store an answered row (and job) for each, copied from the
    store's first ok file and job (schema of the baseline: only columns every version has are named)."""
    import secrets
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(out / "imgtag.db")
    template = db.execute("SELECT id, sha256 FROM files WHERE status = 'ok' ORDER BY id LIMIT 1").fetchone()
    file_cols = [r[1] for r in db.execute("PRAGMA table_info(files)")
                 if r[1] not in ("id", "path", "display", "size", "mtime_ns", "sha256", "phash")]
    job_cols = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[1] not in ("id", "sha256", "file_id")]
    files_sql = (f"INSERT INTO files(path, display, size, mtime_ns, sha256, phash, {', '.join(file_cols)})"
                 f" SELECT ?, ?, ?, ?, ?, ?, {', '.join(file_cols)} FROM files WHERE id = {template[0]}")
    jobs_sql = (f"INSERT INTO jobs(sha256, file_id, {', '.join(job_cols)}) SELECT ?, ?, {', '.join(job_cols)}"
                f" FROM jobs WHERE sha256 = '{template[1]}'")
    base = max(int(r[0]) for r in db.execute("SELECT MAX(id) FROM files")) + 1
    batch_files, batch_jobs = [], []
    for i in range(n):
        path = folder / f"f_{i:07d}.jpg"
        path.write_bytes(secrets.token_bytes(64))
        st = path.stat()
        sha = secrets.token_hex(32)
        batch_files.append((os.fsencode(path), path.name, st.st_size, st.st_mtime_ns, sha, secrets.token_hex(8)))
        batch_jobs.append((sha, base + i))
        if len(batch_files) == 20_000 or i == n - 1:
            db.executemany(files_sql, batch_files)
            db.executemany(jobs_sql, batch_jobs)
            db.commit()
            batch_files, batch_jobs = [], []
    db.close()


def run(src: Path, folder: Path, out: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, last output line) of one `imgtag run` from source tree `src`."""
    args = [sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "-q", "--format", "csv,jsonl"]
    start = time.monotonic()
    proc = subprocess.Popen(args, env={**env, "PYTHONPATH": str(src)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"imgtag from {src} exited {proc.returncode}:\n{output}")
    lines = output.strip().splitlines()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, lines[-1] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--edge", type=int, default=200, help="pixel edge of each JPEG (the default --min-side)")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare against ('none': none)")
    ap.add_argument("--reruns", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="grow the store from 20 answered images (see above)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgtag-bench-rerun-") as tmp_name:
        tmp = Path(tmp_name)
        if a.baseline == "none":
            measure(a, tmp, {"current": ROOT / "src"})
            return
        base_tree = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base_tree), a.baseline],
                       check=True)
        try:
            measure(a, tmp, {"baseline": base_tree / "src", "current": ROOT / "src"})
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)


def measure(a: argparse.Namespace, tmp: Path, sources: dict[str, Path]) -> None:
    folder, solo = tmp / "in", tmp / "solo"
    t = time.monotonic()
    make_jpegs(folder, 20 if a.synthetic else a.images, a.edge)
    make_jpegs(solo, 1, a.edge)
    print(f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{a.images} JPEGs of {a.edge}x{a.edge} made in {time.monotonic() - t:.0f} s; baseline {a.baseline}")
    fake = FakeAnthropicServer(FakeConfig(latency_s=0.0)).start()
    try:
        env = {**os.environ, **fake.env()}
        first_name = next(iter(sources))  # the baseline when there is one: its store the current code migrates
        first, first_solo = tmp / f"out-{first_name}", tmp / f"solo-{first_name}"
        wall, cpu, _, summary = run(sources[first_name], folder, first, env)
        run(sources[first_name], solo, first_solo, env)
        print(f"first run ({first_name} code): {wall:.1f} s wall, {cpu:.1f} s CPU | {summary}")
        if a.synthetic:
            t = time.monotonic()
            grow_store(first, folder, a.images - 20)
            print(f"store grown to {a.images} answered files in {time.monotonic() - t:.0f} s")
        if first_name != "current":
            shutil.copytree(first, tmp / "out-current")
            shutil.copytree(first_solo, tmp / "solo-current")
        asked = fake.stats.messages_requests
        best: dict[str, dict[str, tuple[float, float, float]]] = {name: {} for name in sources}
        for i in range(a.reruns + 1):
            for name, src in sources.items():
                for kind, inp in (("folder", folder), ("solo", solo)):
                    out = tmp / f"{'out' if kind == 'folder' else 'solo'}-{name}"
                    wall, cpu, rss, summary = run(src, inp, out, env)
                    if i == 0:
                        continue  # the first rerun migrates the store (current) and warms the file cache
                    old = best[name].get(kind)
                    if old is None or cpu < old[1]:
                        best[name][kind] = (wall, cpu, rss)
                    if kind == "folder":
                        print(f"  rerun {i} {name:>8}: {wall:5.2f} s wall, {cpu:5.2f} s CPU, peak RSS {rss:4.0f} MB"
                              f" | {summary}")
        if fake.stats.messages_requests != asked:
            raise SystemExit(f"a rerun asked the server {fake.stats.messages_requests - asked} times")
    finally:
        fake.stop()
    per_file: dict[str, float] = {}
    for name in sources:
        (wall, cpu, rss), (swall, scpu, _) = best[name]["folder"], best[name]["solo"]
        per_file[name] = (cpu - scpu) / a.images * 1e6
        print(f"{name:>8}: rerun of {a.images} files {wall:.2f} s wall / {cpu:.2f} s CPU (start-up {swall:.2f} s wall,"
              f" {scpu:.2f} s CPU); {(wall - swall) / a.images * 1e6:.0f} µs/file wall,"
              f" {per_file[name]:.0f} µs/file CPU beyond start-up; peak RSS {rss:.0f} MB")
    if "baseline" in per_file:
        print(f"per-file CPU ratio baseline/current: {per_file['baseline'] / max(per_file['current'], 1e-9):.1f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
