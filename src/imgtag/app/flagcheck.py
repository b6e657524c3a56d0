"""Numeric flags and flag combinations checked before anything is created or paid for (one sentence, exit 2).

A zero or negative value that means nothing used to be accepted and fail later in a confusing way:
`--concurrency 0` hung after one request, `--timeout 0` failed every image, `--budget -1` stopped the run at
"$-1.00". Kept free of heavy imports: a bad flag must be reported in a fraction of a second (bench/startup.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from imgtag.config.options import option

MAX_BATCH_REQUESTS = 100_000  # the Message Batches API's limits (shared/api-facts.md)
MAX_BATCH_MB = 256.0

# setting (the API's parameter name) -> (lowest allowed, the lowest is allowed itself, highest allowed or None,
# how to say the range)
_RANGES: dict[str, tuple[float, bool, float | None, str]] = {
    "concurrency": (1, True, None, "a whole number of at least 1"),
    "workers": (1, True, None, "a whole number of at least 1"),
    "timeout": (0, False, None, "a number of seconds above 0"),
    "max_attempts": (1, True, None, "a whole number of at least 1"),
    "budget": (0, False, None, "an amount in USD above 0"),
    "price_in": (0, True, None, "a price in USD per million tokens of 0 or more"),
    "price_out": (0, True, None, "a price in USD per million tokens of 0 or more"),
    "min_side": (0, True, None, "a number of pixels of 0 or more"),
    "max_megapixels": (0, False, None, "a number of megapixels above 0"),
    "batch_max_requests": (1, True, MAX_BATCH_REQUESTS, f"between 1 and {MAX_BATCH_REQUESTS:,}"),
    "batch_max_mb": (0, False, MAX_BATCH_MB, f"above 0 and at most {MAX_BATCH_MB:g}"),
    "poll_interval": (0, False, None, "a number of seconds above 0"),
    "ray_actors": (1, True, None, "a whole number of at least 1"),
    "ray_batch_size": (1, True, None, "a whole number of at least 1"),
}


def _ok(value: float, low: float, inclusive: bool, high: float | None) -> bool:
    if value != value:  # NaN compares false with everything: never a usable number
        return False
    if value < low or (value == low and not inclusive):
        return False
    return high is None or value <= high


def number_problem(values: Mapping[str, float | int | None]) -> str | None:
    """One sentence for the first setting (by its parameter name: `budget`) whose value is out of range, or None.
    None values are settings not given (their defaults are always in range)."""
    for name, value in values.items():
        if value is None:
            continue
        low, inclusive, high, wording = _RANGES[name]
        if not _ok(float(value), low, inclusive, high):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            return f"{option(name)} must be {wording}, not {shown}"
    return None


def detach_problem(detach: bool, mode: str) -> str | None:
    """--detach only means something for batches: a sync run has nothing to leave on the server."""
    if detach and mode != "batch":
        batch = option("mode", "batch")
        return (f"{option('detach')} only applies to {batch} (it submits the batches and exits); drop it or add "
                f"{batch}")
    return None
