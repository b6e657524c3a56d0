"""First run of a folder, today's code against a baseline commit, side by side in one script run (issue 20 item 2).

    .venv/bin/python bench/firstrun.py                       # 10,000 distinct 320x240 JPEGs, baseline 91e5525
    .venv/bin/python bench/firstrun.py --images 2000 --rounds 2 --baseline 91e5525

The baseline is checked out into a temporary git worktree and run with the same interpreter (its `src` first on
PYTHONPATH). Each round runs the baseline and this tree (in alternating order) as the real CLI in a subprocess,
`imgtag run DIR --out NEW -q --format jsonl`, against one zero-latency fake Anthropic server with no rate limit,
started in this process. Prints, per run: wall seconds, images per second, and CPU milliseconds per image of the
imgtag process tree (user + system of the process and every descendant it reaped: the decode pool's forkserver and
workers), of its main process alone (read from /proc until it exits), of the decode pool (the difference), and of
the fake server (this process); then the ratios now/baseline of images per second and of CPU per image, and the load
average. On a shared machine the CPU figure is the steadier one: wall time depends on what else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig  # noqa: E402

from scale import make_photos  # noqa: E402

DEFAULT_BASELINE = "91e5525"  # main when issue 20 item 2 was taken up


def checkout(commit: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), commit],
                   check=True, capture_output=True)
    return where / "src"


def remove_checkout(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(src: Path, folder: Path, out: Path, fake: FakeAnthropicServer) -> tuple[float, float, float, float, int]:
    """(wall seconds, CPU seconds of the imgtag process tree, of its main process alone, of this process (the
    fake server), exit code)."""
    env = {**os.environ, **fake.env(), "PYTHONPATH": str(src), "IMGTAG_CACHE_DIR": str(out) + "-cache"}
    args = [sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "-q", "--format", "jsonl"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main_cpu = 0.0
    while proc.poll() is None:  # the main process's own CPU, read until it exits (its children are not in it)
        with contextlib.suppress(OSError, IndexError, ValueError):
            main_cpu = _cpu_seconds(proc.pid)
        time.sleep(0.5)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine_after = resource.getrusage(resource.RUSAGE_SELF)
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    fake_cpu = (mine_after.ru_utime - mine.ru_utime) + (mine_after.ru_stime - mine.ru_stime)
    return wall, cpu, main_cpu, fake_cpu, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--baseline", default=DEFAULT_BASELINE)
    a = ap.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="imgtag-bench-firstrun-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "in"
        made = time.monotonic()
        make_photos(folder, a.images, size)  # type: ignore[arg-type]
        print(f"{a.images} distinct JPEGs of {a.size} (made in {time.monotonic() - made:.0f} s); zero-latency fake, "
              f"no rate limit; cores {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}")
        base_tree = tmp / "baseline"
        sources = {f"baseline {a.baseline}": checkout(a.baseline, base_tree), "now": ROOT / "src"}
        totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in sources}
        try:
            with FakeAnthropicServer(FakeConfig()) as fake:
                for rnd in range(a.rounds):
                    order = list(sources.items())
                    if rnd % 2:
                        order.reverse()
                    for name, src in order:
                        load = os.getloadavg()[0]
                        wall, cpu, main_cpu, fake_cpu, code = one_run(src, folder,
                                                                      tmp / f"out-{rnd}-{name.split()[0]}", fake)
                        totals[name][0] += wall
                        totals[name][1] += cpu
                        per = 1000 / a.images
                        print(f"round {rnd + 1} {name:<18} exit {code}  wall {wall:6.1f} s  "
                              f"{a.images / wall:6.1f} images/s  CPU ms/image: imgtag {cpu * per:5.2f} (main process "
                              f"{main_cpu * per:5.2f}, decode pool {(cpu - main_cpu) * per:5.2f}), fake server "
                              f"{fake_cpu * per:5.2f}  (load {load:.1f})", flush=True)
        finally:
            remove_checkout(base_tree)
        (bw, bc), (nw, nc) = totals.values()
        print(f"images/s now/baseline: {bw / nw:.2f}x; CPU per image baseline/now: {bc / nc:.2f}x "
              f"(images per CPU-second now/baseline); load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
