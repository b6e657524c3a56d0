"""The pacer's start-up on a virtual clock: 429s and efficiency, with and without the warm-up's permit rule.

    python bench/pacer_sim.py

Runs the real engine and pacer against a model of the fake Anthropic server's token bucket (tests/serversim.py,
tests/virtualtime.py): every figure is exact and the same on any machine, and each scenario takes milliseconds.
Baseline: the requests waiting for the prompt-cache warm-up hold pacer permits (as before the fix), so the pacer
counts them as sent while the server's bucket sits full. Efficiency = ideal time / simulated time, ideal = a full
bucket at once, then one request per 1/(rpm/60) s, plus one latency (the warm-up's extra latency is not in it).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from serversim import SimProvider, TokenBucket, run_engine  # noqa: E402
from virtualtime import START  # noqa: E402

SCENARIOS = [  # rpm, bucket seconds, latency, images: bench/throughput.py's cases and the tests'
    (300, 1.0, 3.0, 150),
    (300, 6.0, 3.0, 150),
    (60, 1.0, 1.0, 40),
    (1200, 1.0, 0.3, 40),
    (600, 6.0, 0.5, 70),
]


def ideal(rpm: int, burst_s: float, latency: float, n: int) -> float:
    rate = rpm / 60.0
    return max(0.0, n - max(1.0, rate * burst_s)) / rate + latency


def main() -> None:
    print(f"{'server':<32}{'baseline 429s':>14}{'eff':>7}{'now 429s':>10}{'eff':>7}")
    for rpm, burst_s, latency, n in SCENARIOS:
        cells = []
        for gate in (False, True):
            sim = SimProvider(TokenBucket(rpm, burst_s, START), name="anthropic", latency_s=latency)
            result = run_engine(sim, n, warm_up_gate=gate)
            cells.append((len(sim.traffic.rejected), ideal(rpm, burst_s, latency, n) / (result.ended - START)))
        label = f"{rpm}/min, {burst_s:g} s bucket, {latency:g} s, {n}"
        print(f"{label:<32}{cells[0][0]:>14}{cells[0][1]:>7.3f}{cells[1][0]:>10}{cells[1][1]:>7.3f}")


if __name__ == "__main__":
    main()
