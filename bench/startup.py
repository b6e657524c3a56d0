"""Start-up time of the commands people type first: `imgtag --help`, `imgtag --version`, and a configuration
error (a run without ANTHROPIC_API_KEY), against the baseline of importing everything eagerly.

    .venv/bin/python bench/startup.py [--runs 9]

Each figure is the median wall time of N fresh processes (the first, warming the OS file cache, is dropped).
The target (issue 9 item 15) is under 0.3 s for --help and for configuration errors.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "import imgtag.cli, imgtag.runner, anthropic, openai, numpy, imagehash"


def imgtag_cmd() -> list[str]:
    script = Path(sys.executable).with_name("imgtag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgtag"]


def median_seconds(cmd: list[str], runs: int, env: dict[str, str], cwd: str) -> float:
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if i:  # the first run only warms the file cache
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_", "OPENAI_"))}
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        (photos / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
        cases = {
            "baseline: eager imports": [sys.executable, "-c", BASELINE],
            "python -c pass": [sys.executable, "-c", "pass"],
            "imgtag --help": [*imgtag_cmd(), "--help"],
            "imgtag --version": [*imgtag_cmd(), "--version"],
            "imgtag run (no API key)": [*imgtag_cmd(), "run", str(photos), "--out", str(Path(tmp) / "out")],
        }
        results = {name: median_seconds(cmd, args.runs, env, tmp) for name, cmd in cases.items()}
    base = results["baseline: eager imports"]
    print(f"median of {args.runs} runs; cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"{'case':<28} {'seconds':>8} {'vs baseline':>12}")
    for name, seconds in results.items():
        print(f"{name:<28} {seconds:>8.3f} {seconds / base:>11.2f}x")


if __name__ == "__main__":
    main()
