"""A run timed as a user times it: `imgtag run` as a subprocess, from process start to exit, against a fake server
that advertises its rate limit (issue 16 item 5).

    .venv/bin/python bench/endtoend.py                  # 150 images, 300 requests/min, 6 s burst, 3 s latency
    .venv/bin/python bench/endtoend.py --images 60 --rpm 120 --burst 6 --latency 3 --ttft 1
    .venv/bin/python bench/endtoend.py --baseline 91e5525     # the same two runs of that commit first

Two runs, each into a new --out with new images and a fresh server (its bucket full):
- cold: an empty user cache (IMGTAG_CACHE_DIR points at a new folder), so nothing is known about the limits;
- learned: the same user cache, so the run starts from the limits the cold run remembered. The bench waits the
  bucket's depth between the runs first: a fresh server's full bucket is what a user meets after that long.
  The fresh server listens on the cold run's port (the same endpoint, as the API is for a user's next run) and
  keeps the cold run's prompt cache (as the API does for 5 minutes), so a run that knows the cache is warm
  (request/warm_prefix.py) skips the warm-up and pays no cache write.

Efficiency = the schedule's ideal / wall time, where the ideal is the fastest the server's token bucket allows
from the first request on (a full bucket at once, then one request per 1/(rpm/60) s, plus one latency); it
charges the process everything else: interpreter start, imports, the first decodes, exports and exit. The
breakdown shows where the rest went: start to first request, the request phase, last answer to exit.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig  # noqa: E402

from imagegen import make_images  # noqa: E402
from throughput import ideal_seconds, last_answer_end  # noqa: E402


def imgtag_cmd() -> list[str]:
    return [sys.executable, "-m", "imgtag"]  # the code under PYTHONPATH's src (this tree's, or a baseline's)


def timed_run(folder: Path, out: Path, fake: FakeAnthropicServer, cache: Path,
              src: Path = ROOT / "src") -> tuple[float, float, int, float]:
    """(wall seconds, seconds from process start to the first request, exit code, CPU seconds of the process)."""
    env = {**os.environ, **fake.env(), "IMGTAG_CACHE_DIR": str(cache), "PYTHONPATH": str(src)}
    with tempfile.TemporaryFile("w+") as err:  # not a pipe: the time is the process's exit, as a shell sees it
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start_wall, start = time.time(), time.perf_counter()
        code = subprocess.run([*imgtag_cmd(), "run", str(folder), "--out", str(out), "--quiet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=err, check=False).returncode
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if code != 0:
            err.seek(0)
            print(err.read().strip()[-2000:], file=sys.stderr)
    first = (fake.stats.first_request_t or start_wall) - start_wall
    return wall, first, code, cpu


def report(name: str, fake: FakeAnthropicServer, wall: float, first: float, code: int, cpu: float,
           ideal: float) -> None:
    s = fake.stats
    last_answer = last_answer_end(fake)
    phase = last_answer - (s.first_request_t or last_answer)
    limited = s.rate_limited
    print(f"{name:<15} exit {code}  wall {wall:6.2f} s  efficiency {ideal / wall:5.3f}  "
          f"(start->first request {first:4.2f} s, requests {phase:6.2f} s, last answer->exit "
          f"{max(0.0, wall - first - phase):4.2f} s)  429s {limited}/{s.messages_requests} "
          f"({100 * limited / max(1, s.messages_requests):.1f}%)  peak concurrency {s.peak_concurrency}  "
          f"cache-write tokens {s.cache_creation_input_tokens}  CPU {cpu:.2f} s (the process and the children it "
          "waited for)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--rpm", type=int, default=300)
    ap.add_argument("--burst", type=float, default=6.0, help="server bucket depth, seconds of refill")
    ap.add_argument("--latency", type=float, default=3.0)
    ap.add_argument("--ttft", type=float, default=1.0, help="seconds until an answer begins (at most --latency)")
    ap.add_argument("--baseline", help="a commit to run the same way first (checked out in a temporary worktree)")
    args = ap.parse_args(argv)
    ideal = ideal_seconds(args.images, args.rpm, args.burst, args.latency)
    print(f"{args.images} distinct images, server: {args.rpm} requests/min (bucket {args.burst:g} s), latency "
          f"{args.latency:g} s, first token at {args.ttft:g} s; the schedule's ideal {ideal:.2f} s")
    config = FakeConfig(rpm=args.rpm, burst_s=args.burst, latency_s=args.latency, ttft_s=args.ttft)
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sources = [("", ROOT / "src")]
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(tmp / "base"),
                            args.baseline], check=True, capture_output=True)
            sources.insert(0, (f"{args.baseline} ", tmp / "base" / "src"))
        try:
            for label, src in sources:
                cache = tmp / f"user-cache-{label.strip() or 'now'}"
                port = 0
                prompt_cache: dict[str, float] = {}
                for name, size in (("cold", (240, 220)), ("learned", (232, 224))):
                    folder = tmp / f"images-{name}"
                    if not folder.exists():
                        make_images(folder, args.images, size=size)  # new content per run kind: all new work
                    time.sleep(args.burst)  # the bucket refills meanwhile: a fresh server is what one meets
                    with FakeAnthropicServer(FakeConfig(**vars(config)), port=port) as fake:
                        port = fake.port  # the learned run meets the same endpoint
                        fake._cache.update(prompt_cache)  # and the prompt cache the API would still hold
                        load = os.getloadavg()[0]
                        wall, first, code, cpu = timed_run(folder, tmp / f"out-{label.strip()}{name}", fake, cache,
                                                           src)
                        report(f"{label}{name}", fake, wall, first, code, cpu, ideal)
                        prompt_cache = dict(fake._cache)
                        print(f"{'':8} load average {load:.1f}")
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "base")],
                               capture_output=True)


if __name__ == "__main__":
    main()
