"""Adaptive concurrency against a local OpenAI-compatible server with a fixed capacity.

    python bench/throughput.py --provider openai                       # 8 slots, 0.5 s per request, 320 images
    python bench/throughput.py --provider openai --slots 4 --latency 1 --images 160

The fake server (tests/fakes/openai_server.py, vLLM variant) serves `slots` requests at a time, each taking
`latency` seconds (+-jitter), and queues the rest, like a GPU server with a fixed batch size. Its capacity is
slots / latency requests per second. imgtag is not told the capacity: it starts at 4 requests in flight and
adapts (providers/adaptive.py). Printed per design: share of capacity = (answers / request-phase seconds) /
capacity, the server's slot utilisation, and the concurrency reached. Baseline, same script: a fixed
concurrency of 4 (the starting point without adaptation).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402

from imagegen import colours  # noqa: E402


def make_distinct_images(folder: Path, n: int) -> None:
    """n JPEGs with distinct bytes (colours repeat past 343; the width then differs), so none is deduplicated."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    palette = colours(343)
    for i in range(n):
        Image.new("RGB", (240 + i // 343, 220), palette[i % 343]).save(folder / f"img_{i:05d}.jpg", quality=95)


def run_once(folder: Path, out: Path, slots: int, latency: float, jitter: float,
             fixed: int | None) -> tuple[float, int, float, int]:
    from imgtag.config.runconfig import RunConfig
    from imgtag.providers import create_provider, resolve_target
    from imgtag.providers.adaptive import AdaptiveLimiter
    from inprocess import run_in_process

    with FakeOpenAIServer(variant="vllm", slots=slots, latency_s=latency, jitter_s=jitter) as fake:
        os.environ["OPENAI_BASE_URL"] = fake.base_url
        cfg = RunConfig(inputs=[str(folder)], out=out, provider="openai", model="glm-4v-9b", progress=False)
        target = resolve_target(cfg)
        provider = create_provider("openai", timeout=120.0)
        if fixed is not None:
            provider.limiter = AdaptiveLimiter(initial=fixed, maximum=fixed)  # type: ignore[attr-defined]
        run_in_process(cfg, target, provider)
        s = fake.stats
        assert s.first_t is not None and s.last_t is not None
        seconds = s.last_t - s.first_t
        utilisation = s.busy_time / (slots * seconds)
        limiter = provider.limiter  # type: ignore[attr-defined]
        return seconds, s.answered, utilisation, limiter.peak_limit if fixed is None else fixed


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--slots", type=int, default=8, help="requests the server serves at once")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds per request in a slot")
    ap.add_argument("--jitter", type=float, default=0.1, help="extra seconds, uniform 0..jitter")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)
    capacity = args.slots / (args.latency + args.jitter / 2)
    print(f"{args.images} images; server: {args.slots} slots, {args.latency:g}+U(0,{args.jitter:g}) s per request, "
          f"capacity {capacity:.2f} requests/s")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_distinct_images(folder, args.images)
        designs = [("adaptive (imgtag)", None)] + ([] if args.skip_baseline else [("fixed concurrency 4", 4)])
        for name, fixed in designs:
            started = time.monotonic()
            seconds, answered, util, reached = run_once(folder, Path(tmp) / f"out-{fixed}", args.slots,
                                                        args.latency, args.jitter, fixed)
            share = answered / seconds / capacity
            results[name] = seconds
            print(f"{name:<22} answered {answered:>4}  request phase {seconds:6.2f} s  share of capacity "
                  f"{share:5.3f}  slot utilisation {util:5.3f}  concurrency reached {reached}  "
                  f"(wall {time.monotonic() - started:.1f} s)")
    if len(results) == 2:
        print(f"speed-up vs fixed 4: {results['fixed concurrency 4'] / results['adaptive (imgtag)']:.2f}x")


if __name__ == "__main__":
    main()
