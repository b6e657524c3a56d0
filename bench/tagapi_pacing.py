"""The tag API's 30 requests a minute: imgtag's pacing vs the reference's bulk loop, same fake server.

    python bench/tagapi_pacing.py                    # 48 photos, time compressed 20x (30 per 3 s)
    python bench/tagapi_pacing.py --images 60 --compress 10 --latency 0.5 3

The fake (tests/fakes/imagedescriber_server.py) allows 30 requests per sliding window of 60/compress seconds
and answers more with code 1004. Three clients send the same photos:
- baseline: the loop from the API's own documentation (one request after another, an error is printed and
  the image skipped);
- imgtag at the documented rate (IMAGEDESCRIBER_REQUESTS_PER_MINUTE = 30 x compress);
- imgtag told twice the real rate (a second client on the same key has the same effect).
Each runs at two server latencies (real seconds, compressed like the window): 0.5 s, where a sequential
loop outruns 30 a minute, and 3 s, where it cannot reach it. Printed per client: images answered, 1004
answers, request-phase wall time, efficiency = ideal time / actual time (ideal = (answered - 1) / the allowed
long-run rate; over 1 means a short run used the window's start-up allowance of 30 at once), and throughput
(answered per second) vs the baseline.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.imagedescriber_server import PATH, FakeTagConfig, FakeTagServer  # noqa: E402

PHOTOS = Path(os.environ.get("IMGTAG_CORPUS", ROOT.parent / "shared" / "corpus")) / "photos"
PREFIXES = ("clothing_", "darknet_", "intel_", "coral_", "exifpy_", "skimage_")


def pick(n: int, dest: Path) -> list[Path]:
    dest.mkdir(parents=True)
    names = sorted(p.name for p in PHOTOS.iterdir() if p.name.startswith(PREFIXES) and p.suffix == ".jpg")[:n]
    for name in names:
        shutil.copy(PHOTOS / name, dest / name)
    return sorted(dest.iterdir())


def request_phase(fake: FakeTagServer, started: float) -> float:
    times = fake.stats.accepted_at
    return (times[-1] - times[0]) if len(times) > 1 else time.monotonic() - started


def baseline(files: list[Path], fake: FakeTagServer) -> None:
    """The documentation's bulk example: sequential, no pacing, an error means the image is skipped."""
    import httpx2

    headers = {"content-type": "application/json", "authorization": f"Bearer {fake.config.api_key}"}
    with httpx2.Client(base_url=fake.base_url, timeout=60) as client:
        for path in files:
            data = base64.b64encode(path.read_bytes()).decode()
            client.post(PATH, headers=headers, json={"image": f"data:image/jpeg;base64,{data}", "lang": "en"})


def imgtag(folder: Path, fake: FakeTagServer, rpm: float, out: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEDESCRIBER_", "IMGTAG_"))}
    env |= fake.env(IMAGEDESCRIBER_REQUESTS_PER_MINUTE=str(rpm))
    subprocess.run([sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "--provider",
                    "imagedescriber", "--preset", "keywords", "--min-side", "0", "-q"], env=env, check=False,
                   capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--compress", type=float, default=20.0, help="time compression of the 60 s window")
    ap.add_argument("--latency", type=float, nargs="+", default=[0.5, 3.0], help="server latency, real seconds")
    args = ap.parse_args()
    window = 60.0 / args.compress
    rate = 30 / window
    with tempfile.TemporaryDirectory() as tmp:
        files = pick(args.images, Path(tmp) / "in")
        for real_latency in args.latency:
            latency = real_latency / args.compress
            print(f"\n{len(files)} photos; server: 30 requests per {window:g} s ({rate:g}/s), latency {latency:g} s "
                  f"(= 30/min with {real_latency:g} s latency, compressed {args.compress:g}x)")
            print(f"{'client':<28} {'answered':>8} {'1004s':>6} {'seconds':>8} {'efficiency':>10} "
                  f"{'throughput vs baseline':>23}")
            base_speed = None
            for label, run in (
                ("baseline (documented loop)", lambda fake, out: baseline(files, fake)),
                ("imgtag at 30/min", lambda fake, out: imgtag(Path(tmp) / "in", fake, 30 * args.compress, out)),
                ("imgtag told 60/min", lambda fake, out: imgtag(Path(tmp) / "in", fake, 60 * args.compress, out)),
            ):
                config = FakeTagConfig(rate_limit=30, rate_window_s=window, latency_s=latency)
                with FakeTagServer(config) as fake:
                    started = time.monotonic()
                    run(fake, Path(tmp) / f"out-{time.monotonic_ns()}")
                    answered = sum(fake.stats.answered_by_key.values())
                    seconds = request_phase(fake, started)
                    ideal = max(0, answered - 1) / rate
                    speed = answered / seconds if seconds else 0.0
                    base_speed = base_speed or speed
                    print(f"{label:<28} {answered:>8} {fake.stats.rate_limited:>6} {seconds:>8.2f} "
                          f"{ideal / seconds if seconds else 0:>10.2f} {speed / base_speed:>22.2f}x")


if __name__ == "__main__":
    main()
