"""How estimates are shown: scan's table, the dry-run line, and `status`'s estimate beside the actual.

The figures themselves (scan's JSON objects, `status`'s estimate) are made in app/scanner.py and app/status.py."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from imgtag.cli.screen import Lines
from imgtag.pricing.estimate import ModelEstimate
from imgtag.util.money import usd
from imgtag.util.words import plural


def print_estimates(console: Lines, preset: str, estimates: list[dict[str, Any]], selected: str | None) -> None:
    table = Table(title=f"Estimated cost, preset {preset} (prompt caching included)", show_edge=False)
    rows = []
    for e in estimates:
        s = e["sync"] or {}
        tokens_in = f"{s.get('input_tokens', 0):,}" if e["input_tokens"] is not None else "unknown"
        rows.append((e["model"], tokens_in, f"{s.get('cache_write_tokens', 0):,}", f"{s.get('cache_read_tokens', 0):,}",
                     f"{e['output_tokens']:,}", usd(e["standard_usd"]), usd(e["batch_usd"])))
    for i, col in enumerate(("model", "input", "cache write", "cache read", "output", "sync", "batch")):
        money = col in ("sync", "batch")  # never cut short: on a narrow terminal the token headers wrap instead
        table.add_column(col, justify="right" if col != "model" else "left", no_wrap=col == "model" or money,
                         min_width=max((len(r[i]) for r in rows), default=0) if money else None)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    chosen = next((e for e in estimates if e["model"] == selected), estimates[0] if estimates else None)
    if chosen is not None and chosen["images"]:
        console.print(where_tokens_go(chosen), markup=False)


def where_tokens_go(e: dict[str, Any]) -> str:
    p = e["per_image"]
    if not e["caching_known"]:  # a local or unknown model: its minimum, and whether its server caches, are unknown
        cached = ": caching unknown for this model"
    elif e["prefix_cached"]:
        cached = " cached: read at 0.1x after one write" + (", guide included" if e["guide_sent"] else "")
    else:
        cached = " not cached: below the model's caching minimum"
    image = f"image {p['image']:,.0f} tokens" if e["input_tokens"] is not None else "image tokens unknown"
    return (f"per image on {e['model']}: {image}, prompt {p['prompt']:,.0f}, "
            f"schema {p['schema']:,.0f} (prompt + schema{cached}), output {p['output']:,.0f}")


def dry_run_line(est: ModelEstimate) -> str:
    cached = ""
    if est.sync is not None and est.sync.ttl:
        cached = (f" (prefix cached: {est.sync.cache_write_tokens:,} written once, "
                  f"{est.sync.cache_read_tokens:,} read at 0.1x)")
    tokens_in = f"{est.input_tokens:,}" if est.tokens_known else "an unknown number of"
    return (f"dry run: {plural(est.images, 'image')} to tag with {est.model}, about {tokens_in} input tokens before "
            f"caching{cached} + {est.output_tokens:,} output; estimated {usd(est.standard_usd)} standard, "
            f"{usd(est.batch_usd)} batch. Nothing was sent.")


def left_out_line(files: int, by_status: dict[str, int], by_error: dict[str, int]) -> str | None:
    """The dry run's word on the files it would not ask about (unreadable, not images, too small, failed before),
    with their reasons as `scan` counts them, or None when every file would be tagged."""
    left = by_status.get("failed", 0) + by_status.get("skipped", 0)
    if not left:
        return None
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_error.items()))
    return f"{left} of {plural(files, 'file')} will not be tagged: {reasons}"


def status_estimate_line(estimate: dict[str, Any], actual_usd: float | None) -> str:
    est = estimate["usd"]
    if est is None:
        return f"estimate: unknown (no prices for this model); actual {usd(actual_usd)}"
    ratio = f" ({actual_usd / est:.2f}x the estimate)" if est > 0 and actual_usd else ""
    return (f"estimate {usd(est)} for {plural(estimate['images'], 'image')} ({estimate['mode']}, caching included); "
            f"actual {usd(actual_usd)}{ratio}")
