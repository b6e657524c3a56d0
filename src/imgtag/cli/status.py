"""`imgtag status` as text: the report app/status.py gathers, in lines a person reads.

Failures are listed up to a limit with "... and N more"; a kept answer is cut to one line here (`--json` and
the results hold all of it).
"""

from __future__ import annotations

from typing import Any

from imgtag.cli.costview import status_estimate_line
from imgtag.export.targets import label, selection_flags
from imgtag.util.money import usd
from imgtag.util.words import failure_text, plural

KEPT_ANSWER_SHOWN = 160  # characters of a kept answer on the text page; --json and the results hold all of it


def render(report: dict[str, Any], credits_line: str | None) -> list[str]:
    meta = report["target"]
    if not meta:
        return [f"{report['files']} files scanned; no results yet (run `imgtag run`)"]
    lines = [f"preset {meta['preset_name']} ({meta['preset_version']}), {meta['provider']} {meta['model']}"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["by_status"].items())) or "none"
    lines.append(f"files {report['files']}: {counts}")
    if report.get("path_base"):
        lines.append(f"paths relative to {report['path_base']}")
    # A provider billing in credits has no dollar prices: its spend is the credits line, as in a run's summary.
    in_credits = report.get("credits_spent") is not None
    spent = "billed in credits" if in_credits else usd(report["cost_usd"])
    lines.append(f"requests {report['requests']}; tokens in {report['input_tokens']:,}, "
                 f"out {report['output_tokens']:,}, cache write {report['cache_creation_input_tokens']:,}, "
                 f"cache read {report['cache_read_input_tokens']:,}; spent to date {spent}")
    review = report.get("review")
    if review and report["by_status"].get("ok"):
        lines.append(review_line(review))
    if report.get("estimate") and not in_credits:
        lines.append(status_estimate_line(report["estimate"], report["cost_usd"]))
    if credits_line:
        lines.append(credits_line)
    if report["by_error"]:
        lines.append("by cause: " + ", ".join(f"{k} {v}" for k, v in sorted(report["by_error"].items())))
    for b in report["batches"]:
        counts_text = ", ".join(f"{k} {v}" for k, v in (b["request_counts"] or {}).items() if v) or "none yet"
        source = "live" if b.get("live") else "as of the last run"
        lines.append(f"batch {b['id']}: {b['processing_status']}, {plural(b['item_count'], 'request')} "
                     f"({counts_text}; {source})")
    if any(b.get("live") and b["processing_status"] == "ended" for b in report["batches"]):
        lines.append("ended batches are collected by running the same `imgtag run` command again")
    for f in report["failures"]:
        lines.append(f"  failed {f['path']}: {failure_text(f['type'], f['message'])}")
        if f.get("raw_answer"):
            lines.append(f"    answer kept: {_excerpt(f['raw_answer'])}")
    more = report["failures_total"] - len(report["failures"])
    if more > 0:
        lines.append(f"  ... and {more} more (`imgtag status --json` or results.jsonl has them all)")
    if any(f.get("raw_answer") for f in report["failures"]):
        lines.append("  answers kept in full: `imgtag status --json`, and error.raw_answer in results.jsonl")
    for other in report["targets"][1:]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(other["by_status"].items())) or "none"
        lines.append(f"also here: {label(other)} ({counts}; spent {usd(other['cost_usd'])}); "
                     f"`imgtag status {selection_flags(other)}`")
    return lines


def review_line(review: dict[str, int]) -> str:
    """`imgtag review` progress over the answered images: 'review: 3 reviewed, 1 edited, 96 not yet reviewed'."""
    parts = [f"{review['reviewed']} reviewed"]
    if review["rejected"]:
        parts.append(f"{review['rejected']} rejected")
    parts += [f"{review['edited']} edited", f"{review['not_reviewed']} not yet reviewed"]
    return "review: " + ", ".join(parts)


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= KEPT_ANSWER_SHOWN else line[:KEPT_ANSWER_SHOWN - 1] + "…"
