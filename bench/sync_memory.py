"""Memory of a sync run as the folder grows: peak traced memory, and request bodies alive against requests in flight.

    python bench/sync_memory.py                           # 30 and 240 images, --concurrency 4, collector on
    python bench/sync_memory.py --gc-off                  # the cyclic collector off during each run
    python bench/sync_memory.py --sizes 30,240 --concurrency 64 --bodies

Each run is `imgtag run FOLDER -q --workers 1` in this process (as tests/test_memory.py runs it) against the
Anthropic fake (tests/fakes/anthropic_server.py, 20 ms per answer) in its own process, so its request log does not
count. Images are noise (400x300, JPEG q90, ~100 KB), so each request carries ~450 KB: the image, its base64 text
and the JSON body. A warm-up run of 5 images comes first (the SDK's import is not what is measured).

`--gc-off`: a body freed only by the cyclic garbage collector stays, so what grows with the folder shows every time
instead of whenever a full collection happens not to run. `--bodies`: every 50 ms the objects the collector tracks
are walked for JSON bodies (bytes of 50 KB or more starting with "{"), counted beside the engine's requests in
flight (slow: the walk costs ~20 ms each time; the peak is not measured then).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from imgtag.cli.commands import app  # noqa: E402
from imgtag.request import engine as engine_module  # noqa: E402


def noisy_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)).save(folder / f"n{i:04d}.jpg",
                                                                                       quality=90)


def json_bodies() -> int:
    """JSON request bodies alive: bytes of 50 KB or more starting with '{' that a tracked object refers to."""
    seen: set[int] = set()
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if isinstance(ref, bytes) and len(ref) >= 50_000 and ref[:1] == b"{":
                seen.add(id(ref))
    return len(seen)


class BodyWatch:
    """Samples bodies alive and the engine's requests in flight while Engine.run runs."""

    def __init__(self) -> None:
        self.reset()
        original = engine_module.Engine.run
        watch = self

        async def run(engine: Any, items: Any) -> None:
            async def sample() -> None:
                while True:
                    await asyncio.sleep(0.05)
                    if engine.stats.requests:  # the SDK is in: walking during its import can break it
                        bodies, in_flight = json_bodies(), engine.requests_in_flight
                        watch.bodies, watch.in_flight = max(watch.bodies, bodies), max(watch.in_flight, in_flight)
                        watch.beyond = max(watch.beyond, bodies - in_flight)

            sampler = asyncio.create_task(sample())
            try:
                await original(engine, items)
            finally:
                sampler.cancel()

        engine_module.Engine.run = run  # type: ignore[method-assign]

    def reset(self) -> None:
        self.bodies = self.in_flight = self.beyond = 0  # the largest seen of each, over the samples

    def __str__(self) -> str:
        return (f"JSON bodies alive at most {self.bodies}, requests in flight at most {self.in_flight}, "
                f"bodies beyond those in flight at most {self.beyond}")


def one_run(folder: Path, out: Path, concurrency: int, gc_off: bool) -> tuple[int, str]:
    gc.collect()
    if gc_off:
        gc.disable()
    tracemalloc.start()
    try:
        result = CliRunner().invoke(app, ["run", str(folder), "--out", str(out), "-q", "--workers", "1",
                                          "--concurrency", str(concurrency)], catch_exceptions=False)
        return tracemalloc.get_traced_memory()[1], f"exit {result.exit_code}"
    finally:
        tracemalloc.stop()
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="30,240")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--gc-off", action="store_true")
    parser.add_argument("--bodies", action="store_true")
    args = parser.parse_args()
    watch = BodyWatch() if args.bodies else None
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0", "--config",
                             json.dumps({"latency_s": 0.02})], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert fake.stdout is not None
        os.environ.update(ANTHROPIC_BASE_URL=fake.stdout.readline().strip(), ANTHROPIC_API_KEY="sk-ant-test-key")
        with tempfile.TemporaryDirectory() as tmp:
            for n in (5, *(int(s) for s in args.sizes.split(","))):
                folder = Path(tmp) / f"in{n}"
                noisy_images(folder, n)
                if watch is not None:
                    watch.reset()
                peak, code = one_run(folder, Path(tmp) / f"out{n}", args.concurrency, args.gc_off)
                line = f"{n:5d} images: peak traced {peak / 1e6:6.2f} MB ({code})"
                if watch is not None:
                    line += f"; {watch}"
                print(line + ("  (warm-up)" if n == 5 else ""), flush=True)
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
