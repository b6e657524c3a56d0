"""The store at a million images (issue 20 item 3): `imgtag status` (text and --json) on a store of N synthetic
images, against a baseline store of B images built in the same run, and the store's size per 10,000 images.

    python bench/store_scale.py [--images 1000000] [--baseline 100000] [--keep DIR]

Rows are synthetic (tests/synthstore.py: one file row, one answered job and one attempt per image, 1% failed,
0.5% skipped, 1% exact copies, 1% reviewed), written by executemany in one transaction into a store imgtag made.
`status` runs as a user runs it (a new `imgtag` process; best of 3), timed as wall time and as the process's CPU
time, which a busy machine does not inflate. The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from synthstore import fill  # noqa: E402


def imgtag() -> list[str]:
    script = Path(sys.executable).with_name("imgtag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgtag"]


def timed_status(out: Path, *flags: str, runs: int = 3) -> tuple[float, float]:
    """Best wall and best CPU seconds (user + system of the child) of `imgtag status` over `runs` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([*imgtag(), "status", "--out", str(out), *flags], capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0, done.stderr
    return min(walls), min(cpus)


def measure(folder: Path, n: int) -> dict[str, float]:
    out = folder / f"store-{n}"
    started = time.perf_counter()
    fill(out, n, root=str(folder / "catalogue"))
    built = time.perf_counter() - started
    subprocess.run([*imgtag(), "status", "--out", str(out)], capture_output=True, check=True)  # warm the cache
    wall, cpu = timed_status(out)
    jwall, jcpu = timed_status(out, "--json")
    size = (out / "imgtag.db").stat().st_size
    return {"status wall s": wall, "status CPU s": cpu, "--json wall s": jwall, "--json CPU s": jcpu,
            "MB per 10,000": size / 1e6 / n * 10_000, "store MB": size / 1e6, "fill s": built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the stores here and keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="imgtag-store-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        base = measure(folder, args.baseline)
        big = measure(folder, args.images)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{'':16}{args.baseline:>12,}{args.images:>12,}{'ratio':>8}")
    for name, value in big.items():
        ratio = value / base[name] if base[name] else float("nan")
        print(f"{name:16}{base[name]:>12.3f}{value:>12.3f}{ratio:>7.1f}x")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
