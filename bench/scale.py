"""The local engine vs `--engine ray` on one machine: same images, same fake server, one run each.

    python bench/scale.py                      # 2,000 images of 1600x1200, fake Anthropic server, 50 ms latency
    python bench/scale.py --images 400 --size 1600x1200 --latency 0.05

Each engine runs as the real CLI in a subprocess with a new output folder (`--engine ray` starts its own local
cluster: num_cpus = cores, no dashboard). Prints wall time from start to exit, images per second, the
throughput ratio (Ray / local), and the peak resident memory of the whole process tree (the driver, its decode
pool, and for Ray the GCS, raylet, workers and actors), sampled every 0.2 s from /proc. The Ray engine's fixed
start-up cost on this machine (`ray.init` alone) is measured separately and printed too. The machine may be
shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig  # noqa: E402


def make_photos(folder: Path, n: int, size: tuple[int, int]) -> None:
    """n distinct camera-like JPEGs (smooth gradient + noise, so they are not trivially compressible)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    for i in range(n):
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        noise = rng.normal(0, 12, (h // 8, w // 8, 3)).astype(np.float32).repeat(8, 0).repeat(8, 1)
        pixels = np.clip(base * tint + noise + (i % 50), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:05d}.jpg", quality=90)


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of root_pid and every descendant (Ray's processes are the driver's descendants)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 1e6


def run_engine(engine: str, folder: Path, out: Path, fake: FakeAnthropicServer) -> tuple[float, float, str]:
    env = {**os.environ, **fake.env()}
    args = [sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "--engine", engine, "-q",
            "--format", "jsonl"]
    start = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_mb(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    elapsed = time.monotonic() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} engine exited {proc.returncode}:\n{output}")
    return elapsed, peak, output.strip().splitlines()[-2] if output.strip() else ""


def ray_init_seconds() -> float:
    code = ("import time, logging, ray\nt = time.monotonic()\n"
            "ray.init(include_dashboard=False, logging_level=logging.ERROR)\n"
            "print(time.monotonic() - t)\nray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", default="1600x1200")
    ap.add_argument("--latency", type=float, default=0.05)
    a = ap.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="imgtag-bench-scale-") as tmp:
        folder = Path(tmp) / "in"
        t = time.monotonic()
        make_photos(folder, a.images, size)  # type: ignore[arg-type]
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}")
        print(f"images: {a.images} JPEGs of {a.size}, {mb:.0f} MB (made in {time.monotonic() - t:.0f} s); "
              f"fake server latency {a.latency * 1000:.0f} ms, no rate limit")
        results = {}
        for engine in ("local", "ray"):
            fake = FakeAnthropicServer(FakeConfig(latency_s=a.latency)).start()
            try:
                elapsed, peak, summary = run_engine(engine, folder, Path(tmp) / f"out-{engine}", fake)
                asked = fake.stats.messages_requests
            finally:
                fake.stop()
            results[engine] = (elapsed, peak)
            print(f"{engine:>5}: {elapsed:6.1f} s, {a.images / elapsed:5.1f} images/s, peak memory {peak:6.0f} MB, "
                  f"{asked} requests | {summary}")
        init = ray_init_seconds()
        (lt, lm), (rt, rm) = results["local"], results["ray"]
        print(f"throughput ratio ray/local: {lt / rt:.2f}x; peak memory ratio ray/local: {rm / lm:.1f}x")
        print(f"Ray fixed overhead on this machine: ray.init alone {init:.1f} s (the run also pays actor start-up "
              "and a second decode of every image on the workers)")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
