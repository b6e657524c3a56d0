"""Start-up time of the commands people type first: `imgtag --help`, `imgtag --version`, and a configuration
error (a run without ANTHROPIC_API_KEY), against the baseline of importing everything eagerly.

    .venv/bin/python bench/startup.py [--runs 9] [--no-pyc] [--compare OTHER/src]

Each figure is the median wall time of N fresh processes (the first, warming the OS file cache and writing
bytecode caches, is dropped). By default imgtag's modules load from their .pyc, as after `pip install`;
--no-pyc runs a copy of the imgtag package without .pyc under PYTHONDONTWRITEBYTECODE=1, so its modules are
compiled at each start, as in a fresh editable checkout with that variable set (installed packages keep the .pyc
pip wrote). --compare adds the missing-key case run from another source tree (e.g. an older checkout's src/),
interleaved with the others so all see the same machine load.
The target (issue 9 item 15) is under 0.3 s for --help and for configuration errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "import imgtag.cli.commands, imgtag.app.runner, anthropic, openai, numpy, imagehash"


def imgtag_cmd() -> list[str]:
    script = Path(sys.executable).with_name("imgtag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "imgtag"]


Case = tuple[list[str], dict[str, str]]


def median_seconds(cases: dict[str, Case], runs: int, cwd: str) -> dict[str, float]:
    """Round-robin over the cases, so a change in machine load touches all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs + 1):
        for name, (cmd, env) in cases.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if i:  # the first run only warms the file cache (and writes .pyc files)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def python_path(src: Path, tmp: Path, name: str, fresh: bool) -> str:
    """The folder to put on PYTHONPATH: src itself, or (fresh) a copy of its imgtag package without .pyc."""
    if not fresh:
        return str(src.resolve())
    shutil.copytree(src / "imgtag", tmp / name / "imgtag", ignore=shutil.ignore_patterns("__pycache__"))
    return str(tmp / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-pyc", action="store_true", help="compile imgtag's modules at each start")
    parser.add_argument("--compare", metavar="SRC", help="another source tree (holding imgtag/) to compare with")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "IMGTAG_", "OPENAI_", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"))}
    with tempfile.TemporaryDirectory() as tmp:
        if args.no_pyc:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPATH"] = python_path(Path(__file__).resolve().parents[1] / "src", Path(tmp), "this", args.no_pyc)
        photos = Path(tmp) / "photos"
        photos.mkdir()
        (photos / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
        run = ["run", str(photos), "--out", str(Path(tmp) / "out")]
        cases: dict[str, Case] = {
            "baseline: eager imports": ([sys.executable, "-c", BASELINE], env),
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "imgtag --help": ([*imgtag_cmd(), "--help"], env),
            "imgtag --version": ([*imgtag_cmd(), "--version"], env),
            "imgtag run (no API key)": ([*imgtag_cmd(), *run], env),
        }
        if args.compare:
            other = {**env, "PYTHONPATH": python_path(Path(args.compare), Path(tmp), "other", args.no_pyc)}
            cases["  same, --compare tree"] = ([*imgtag_cmd(), *run], other)
        results = median_seconds(cases, args.runs, tmp)
    base = results["baseline: eager imports"]
    print(f"median of {args.runs} runs; cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; "
          f"{'no .pyc' if args.no_pyc else 'with .pyc'}")
    print(f"{'case':<28} {'seconds':>8} {'vs baseline':>12}")
    for name, seconds in results.items():
        print(f"{name:<28} {seconds:>8.3f} {seconds / base:>11.2f}x")


if __name__ == "__main__":
    main()
