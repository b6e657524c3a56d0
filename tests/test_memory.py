"""Sync mode keeps memory flat as the folder grows: decoded images and encoded payloads are bounded by the
ingest window and the requests in flight, never by the number of files."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagegen import run_cli


def noisy_images(folder: Path, n: int) -> None:
    """Noise compresses badly, so each encoded payload is realistically large (~100 KB)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"n{i:04d}.jpg", quality=90)


def peak_for(images: int, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    folder = tmp_path / f"in{images}"
    noisy_images(folder, images)
    tracemalloc.start()
    try:
        code, output = run_cli(["run", str(folder), "--out", str(tmp_path / f"out{images}"), "-q", "--workers", "1"],
                               env, monkeypatch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, output
    return peak


# Still open (session of 2026-12-07): the failure is intermittent (it failed 1 of 6 runs here, load 7-17), the peak
# is mostly request bodies (per request in flight: the image, its base64 text and the JSON body, ~450 KB here),
# and in one probe the 240-image run still held 6 more bodies than the 30-image run after the engine had ended,
# though nothing gc could collect held them (a gc.collect() there freed ~0.1 MB). The holder is not found yet.
@pytest.mark.xfail(strict=False, reason="known regression from merging coldrun and folder (73a615e): "
                   "peak traced memory 5 MB at 30 images, 9.6 MB at 240; intermittent, cause not yet found")
def test_sync_run_memory_does_not_grow_with_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake runs in its own process so its request log does not count against us.
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_server", "--port", "0", "--config",
                             json.dumps({"latency_s": 0.02})], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        env = {"ANTHROPIC_BASE_URL": fake.stdout.readline().strip(), "ANTHROPIC_API_KEY": "sk-ant-test-key"}
        peak_for(5, tmp_path, env, monkeypatch)  # warm-up: first-time imports are not what we measure
        small = peak_for(30, tmp_path, env, monkeypatch)
        large = peak_for(240, tmp_path, env, monkeypatch)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    # 8x the images (~20 MB more encoded payload); allow modest growth, nothing proportional
    assert large < small * 1.5 + 1024 * 1024, (small, large)
